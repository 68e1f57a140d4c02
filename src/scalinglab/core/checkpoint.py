"""Checkpoints of a training run: save its whole state atomically, resume only the very same run.

A checkpoint holds everything the next step depends on (weights, Adam moments, step counter, the
batch source's random state, the logs so far), so a run resumed from one produces bit-identical
numbers to an uninterrupted run on the same device. It also holds a fingerprint of the run's inputs
(shapes, schedule, data, initial weights): a checkpoint left by a different run is ignored, with a
note, rather than silently continued.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import torch

from scalinglab.core.io import atomic_path

FORMAT = 1
CHECK_EVERY_STEPS = 256  # how often the loop looks at the clock (cheap), not how often it saves


def fingerprint(*parts) -> str:
    """A hash of tensors, arrays and plain values: equal inputs, equal fingerprints."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            part = part.detach().cpu().contiguous()
            digest.update(str((part.dtype, tuple(part.shape))).encode())
            digest.update(part.view(torch.uint8).numpy().tobytes() if part.numel() else b"")
        elif hasattr(part, "tobytes"):
            digest.update(part.tobytes())
        else:
            digest.update(repr(part).encode())
    return digest.hexdigest()


class Checkpointer:
    """Saves a state dict to `path` when `every_s` seconds have passed since the last save.

    path None disables it (save and load do nothing).
    """

    def __init__(self, path, every_s: float, key: str):
        self.path = Path(path) if path else None
        self.every_s = float(every_s)
        self.key = key
        self.last_save = time.monotonic()

    def load(self) -> dict | None:
        """The saved state of this very run, or None (no file, unreadable, or another run's)."""
        if self.path is None or not self.path.exists():
            return None
        try:
            blob = torch.load(self.path, weights_only=False, map_location="cpu")
        except Exception as exc:  # a foreign or damaged file: start over rather than fail
            print(
                f"note: ignoring unreadable checkpoint {self.path} ({type(exc).__name__}); starting from step 0",
                file=sys.stderr,
            )
            return None
        if not isinstance(blob, dict) or blob.get("format") != FORMAT or blob.get("key") != self.key:
            print(
                f"note: checkpoint {self.path} belongs to another run (settings or data changed); starting from step 0",
                file=sys.stderr,
            )
            return None
        print(f"resuming from checkpoint {self.path} at step {blob['state']['step']}", file=sys.stderr)
        return blob["state"]

    def due(self, step: int, check_every: int = CHECK_EVERY_STEPS) -> bool:
        """Whether to save after `step`; the clock is read every `check_every` steps (1: every call)."""
        return self.path is not None and step % check_every == 0 and time.monotonic() - self.last_save >= self.every_s

    def save(self, state: dict) -> None:
        with atomic_path(self.path) as tmp:
            torch.save({"format": FORMAT, "key": self.key, "state": state}, tmp)
        self.last_save = time.monotonic()


def discard(path) -> None:
    """Delete a job's checkpoint once every output of the job is written (None: nothing to do)."""
    if path:
        Path(path).unlink(missing_ok=True)
