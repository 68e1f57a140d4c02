"""Results in a shared directory: outputs follow the umask, and one checkpoint has one writer at a time."""

import os
import signal
import stat
import subprocess
import sys
import time

import pandas as pd
import pytest

from scalinglab.core import checkpoint, io
from scalinglab.core.checkpoint import Checkpointer, discard, lock_path
from scalinglab.core.errors import UserError


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_follow_the_umask(tmp_path, umask, expected):
    old = os.umask(umask)
    try:
        io.write_text(tmp_path / "a.json", "{}")
        io.write_parquet(pd.DataFrame({"x": [1.0]}), tmp_path / "a.parquet")
        with Checkpointer(tmp_path / "a.pt", 0, key="k") as saver:
            saver.save({"step": 1})
        io.write_text(tmp_path / "a.json", "{}")  # replacing a file gives it the umask's mode too
    finally:
        os.umask(old)
    for name in ("a.json", "a.parquet", "a.pt"):
        assert mode(tmp_path / name) == expected, name


SUBPROCESS_UMASK = """
import os, sys
os.umask(int(sys.argv[2], 8))
import scalinglab.core.io as io
assert io._umask_by_setting() == int(sys.argv[2], 8) == io._proc_umask()
io._proc_umask = lambda: None  # no /proc: the value read at import is used
io.write_text(sys.argv[1], "x")
assert io._umask_by_setting() == int(sys.argv[2], 8)  # and the umask is as it was
"""


@pytest.mark.parametrize("umask, expected", [(0o002, 0o664), (0o027, 0o640)])
def test_without_proc_the_umask_read_at_import_is_used(tmp_path, umask, expected):
    out = tmp_path / "out.txt"
    subprocess.run([sys.executable, "-c", SUBPROCESS_UMASK, str(out), oct(umask)[2:]], check=True)
    assert mode(out) == expected


def test_a_checkpoint_in_use_stops_a_second_checkpointer_with_a_user_error(tmp_path):
    path = tmp_path / "width~8.pt"
    first = Checkpointer(path, 0, key="k")
    # flock locks belong to an open file description: a second open in this process conflicts too
    with pytest.raises(UserError, match=rf"width~8.pt is in use by another process \(pid {os.getpid()} on .*, started"):
        Checkpointer(path, 0, key="k")
    first.close()
    with Checkpointer(path, 0, key="k") as again:  # released: the next one gets it
        again.save({"step": 1})
    Checkpointer(path, 0, key="k").close()  # and the with block released it


def test_the_lock_is_released_when_the_block_raises(tmp_path):
    path = tmp_path / "c.pt"
    with pytest.raises(RuntimeError), Checkpointer(path, 0, key="k"):
        raise RuntimeError("training failed")
    Checkpointer(path, 0, key="k").close()


def test_no_checkpoint_takes_no_lock(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Checkpointer(None, 0, key=""), Checkpointer(None, 0, key="") as saver:
        assert saver.load() is None
    assert not list(tmp_path.iterdir())


def test_discard_removes_the_checkpoint_and_its_lock_file(tmp_path):
    path = tmp_path / "c.pt"
    with Checkpointer(path, 0, key="k") as saver:
        saver.save({"step": 1})
    assert path.exists() and lock_path(path).exists()
    discard(path)
    assert not path.exists() and not lock_path(path).exists()


HOLDER = """
import sys, time
from scalinglab.core.checkpoint import Checkpointer
saver = Checkpointer(sys.argv[1], 0, key="k")
print("locked", flush=True)
time.sleep(600)
"""


def start_holder(path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_another_process_holding_the_checkpoint_is_named_and_a_killed_one_leaves_no_stale_lock(tmp_path):
    path = tmp_path / "ckpt" / "width~8.pt"
    holder = start_holder(path)
    try:
        with pytest.raises(UserError, match=rf"in use by another process \(pid {holder.pid} .*orphan") as error:
            Checkpointer(path, 0, key="k")
        assert "\n" not in str(error.value)
        discard(path)  # another run's checkpoint in use: left alone
        assert lock_path(path).exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with Checkpointer(path, 0, key="k") as saver:  # the dead holder's lock went with it
        saver.save({"step": 1})


def test_discard_by_the_holder_itself_removes_its_lock_file(tmp_path):
    path = tmp_path / "c.pt"
    first = Checkpointer(path, 0, key="k")
    discard(path)  # held by this very process: removed
    assert not lock_path(path).exists()
    first.close()


def test_a_lock_file_removed_between_open_and_lock_is_not_trusted(tmp_path, monkeypatch):
    """A waiter that opened the lock file just before its holder removed it (discard) must not take the
    removed file's lock while another run holds the new one."""
    path = tmp_path / "c.pt"
    first = Checkpointer(path, 0, key="k")
    real_flock = checkpoint.fcntl.flock
    later = []

    def flock(fd, operation):
        if not later and operation & checkpoint.fcntl.LOCK_EX:
            later.append(None)  # once: the holder finishes and discards, another run takes a new lock file
            discard(path)
            first.close()
            later[0] = Checkpointer(path, 0, key="k")
        return real_flock(fd, operation)

    monkeypatch.setattr(checkpoint.fcntl, "flock", flock)
    with pytest.raises(UserError, match="in use by another process"):
        Checkpointer(path, 0, key="k")
    later[0].close()


def test_holder_message_when_the_pid_is_not_written_yet(tmp_path):
    path = tmp_path / "c.pt"
    holder = start_holder(path)
    try:
        lock_path(path).write_text("")  # the holder has the lock but has not written its pid yet
        started = time.monotonic()
        with pytest.raises(UserError, match=r"in use by another process \(pid unknown\)"):
            Checkpointer(path, 0, key="k")
        assert time.monotonic() - started < 5  # non-blocking
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_a_checkpointer_dropped_without_close_lets_go(tmp_path):
    path = tmp_path / "c.pt"
    Checkpointer(path, 0, key="k").save({"step": 1})  # never closed: garbage, and its lock with it
    with Checkpointer(path, 0, key="k") as saver:
        assert saver.load() == {"step": 1}


def test_a_lock_file_this_user_cannot_write_still_locks(tmp_path, monkeypatch):
    """A colleague's lock file in a shared directory (not writable to us): flock needs only reading."""
    path = tmp_path / "c.pt"
    Checkpointer(path, 0, key="k").close()

    def open_without_write_permission(file, mode="r", *args, **kwargs):
        if mode != "r":
            raise PermissionError(13, "Permission denied", str(file))
        return open(file, mode, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "open", open_without_write_permission, raising=False)
    with Checkpointer(path, 0, key="k"):
        with pytest.raises(UserError, match=r"in use by another process \(pid unknown\)"):
            Checkpointer(path, 0, key="k")
    Checkpointer(path, 0, key="k").close()
