"""Devices: which one a job trains on, and a GPU slot of its own for each concurrent GPU job.

`snakemake --resources gpu=N` only counts GPU jobs; it sets no CUDA_VISIBLE_DEVICES, so without help
every job would land on device 0. A job takes the first free device by holding an exclusive
`flock` on a per-device lock file; the kernel drops the lock when the process ends, however it
ends, so a killed job never leaks its slot. Where a scheduler (Slurm) already set
CUDA_VISIBLE_DEVICES, the job uses what it was given.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scalinglab.core.errors import UserError

DEFAULT_LOCK_DIR = Path(tempfile.gettempdir()) / "scalinglab-gpu-slots"


def pick_device(requested: str = "auto"):
    """The torch device for a `device` setting: "auto" is CUDA where one is present, else the CPU."""
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(
            f"device: {requested}, but torch sees no CUDA GPU on this machine ({os.uname().nodename}); "
            "use device: auto or cpu"
        )
    return torch.device(requested)


def scheduler_assigned() -> bool:
    return bool(os.environ.get("CUDA_VISIBLE_DEVICES", "").strip())


@contextmanager
def gpu_slot(
    n_devices: int, lock_dir: str | os.PathLike = DEFAULT_LOCK_DIR, poll: float = 0.5, timeout: float | None = None
) -> Iterator[int]:
    """Hold one of `n_devices` device slots for the duration of the block; yield its index.

    Waits (polling) while every slot is taken; raises TimeoutError after `timeout` seconds.
    """
    if n_devices < 1:
        raise ValueError("no GPU to allocate: n_devices must be >= 1")
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    while True:
        for index in range(n_devices):
            handle = open(lock_dir / f"gpu{index}.lock", "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                handle.seek(0)
                handle.truncate()
                handle.write(f"{os.getpid()}\n")
                handle.flush()
                yield index
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        if timeout is not None and time.monotonic() - started > timeout:
            raise TimeoutError(f"all {n_devices} GPU slots stayed busy for {timeout:.0f}s")
        time.sleep(poll)


@contextmanager
def device_for_job(device, lock_dir: str | os.PathLike = DEFAULT_LOCK_DIR) -> Iterator:
    """The torch device a training job should use: a free GPU slot on CUDA, else `device` itself."""
    import torch

    if device.type != "cuda" or scheduler_assigned():
        yield device
        return
    with gpu_slot(torch.cuda.device_count(), lock_dir) as index:
        yield torch.device("cuda", index)
