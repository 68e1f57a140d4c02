"""GPU slot allocation with two simulated devices: no two concurrent jobs share one."""

import multiprocessing as mp
import os
import time

import pytest

from scalinglab.core.devices import gpu_slot, scheduler_assigned


def _hold(lock_dir, n_devices, hold, queue):
    with gpu_slot(n_devices, lock_dir, poll=0.02) as index:
        start = time.monotonic()
        queue.put(("start", os.getpid(), index, start))
        time.sleep(hold)
        queue.put(("end", os.getpid(), index, time.monotonic()))


def test_concurrent_jobs_never_share_a_device(tmp_path):
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    jobs = [ctx.Process(target=_hold, args=(tmp_path, 2, 0.4, queue)) for _ in range(5)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=30)
    events = sorted((queue.get() for _ in range(10)), key=lambda e: e[3])
    busy: dict[int, int] = {}
    for kind, pid, index, _ in events:
        if kind == "start":
            assert index not in busy, f"device {index} given to {pid} while {busy.get(index)} held it"
            busy[index] = pid
        else:
            assert busy.pop(index) == pid
    assert {e[2] for e in events} == {0, 1}


def test_a_killed_job_releases_its_slot(tmp_path):
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    holder = ctx.Process(target=_hold, args=(tmp_path, 1, 60, queue))
    holder.start()
    assert queue.get(timeout=10)[2] == 0
    holder.kill()
    holder.join()
    with gpu_slot(1, tmp_path, poll=0.02, timeout=5) as index:
        assert index == 0


def test_waits_then_times_out_when_all_slots_are_busy(tmp_path):
    with gpu_slot(1, tmp_path):
        with pytest.raises(TimeoutError):
            with gpu_slot(1, tmp_path, poll=0.01, timeout=0.1):
                pass


def test_respects_a_scheduler_assignment(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert scheduler_assigned()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert not scheduler_assigned()
