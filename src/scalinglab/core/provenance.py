"""What produced a file: config hash, package and torch versions, device, wall time."""

from __future__ import annotations

import hashlib
import json
import platform
import time

from scalinglab import __version__


def config_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def provenance(settings: dict, device: str, seconds: float) -> dict:
    import torch

    return {
        "config_hash": config_hash(settings),
        "settings": settings,
        "scalinglab_version": __version__,
        "torch_version": torch.__version__,
        "device": device,
        "host": platform.node(),
        "wall_seconds": round(seconds, 3),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
