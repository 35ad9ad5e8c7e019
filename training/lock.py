"""One trainer per workdir: an exclusive advisory lock (flock) on <workdir>/train.lock, held
while `training.loop.train` runs. The operating system drops it when the process ends in any
way, so a crashed or killed run leaves no stale lock behind."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket

LOCK_FILE = "train.lock"


@contextlib.contextmanager
def held(workdir: str):
    """Hold the workdir's lock inside the block; a second holder gets a RuntimeError naming the
    process that has it."""
    path = os.path.join(workdir, LOCK_FILE)
    f = open(path, "a+")  # noqa: SIM115 -- held until the block ends
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise RuntimeError(
            f"{workdir!r} is being trained by {holder} (it holds {path}); wait for it to end or "
            f"give another --workdir"
        ) from None
    try:
        f.seek(0)
        f.truncate()
        f.write(f"train.py pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        yield
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()
