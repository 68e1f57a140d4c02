import sys
from pathlib import Path

import torch

# tests share a 2-core machine with other work: oversubscribed threads make tiny ops 30x slower
torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).parent))
