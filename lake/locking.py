"""The lake's commit lock: one committer at a time, released by the OS if a process dies.

Runs stage their data without the lock (the slow part) and take it only to commit, so
concurrent writers wait milliseconds, not minutes. ``flock`` is released when the holder exits,
even on SIGKILL, which is what lets the next committer roll back a dead run's versions safely.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from lake.errors import CommitLockTimeoutError


class CommitLock:
    def __init__(self, path: Path, timeout_s: float = 300.0) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._fd: int | None = None

    def __enter__(self) -> CommitLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise CommitLockTimeoutError(
                        f"waited {self.timeout_s:.0f}s for the commit lock {self.path}; another "
                        "process is committing to this lake. Retry when it has finished."
                    ) from None
                time.sleep(0.01)
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
