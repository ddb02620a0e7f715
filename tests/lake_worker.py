"""A writer process for the crash and concurrency tests: ``python lake_worker.py MODE LAKE ...``.

Modes:
  append N TAG          append N tools-shaped rows whose names start with TAG, as one run
  loop K N TAG          K runs of ``append N``
  die-staged N          stage N rows in a run, then SIGKILL itself before committing
  die-before-log N      commit the data of a run, then SIGKILL itself before the log commit
"""

from __future__ import annotations

import os
import signal
import sys

os.environ.setdefault("LANCE_LOG", "error")

import pyarrow as pa

from lake import Lake
from lake.eventlog import EventLog
from schemas import Tool
from schemas.events import TableCommitted


def tool_rows(n: int, tag: str) -> pa.Table:
    tools = [
        Tool(
            server_id="srv-" + "0" * 24,
            name=f"{tag}_{i}",
            description=f"Synthetic tool number {i} of writer {tag}.",
            parameters={"type": "object", "properties": {}, "required": []},
            domain="test",
            source_format="openai",
        )
        for i in range(n)
    ]
    return Tool.to_arrow(tools)


def main(argv: list[str]) -> None:
    mode, uri, *rest = argv
    lake = Lake(uri)
    if mode == "append":
        n, tag = int(rest[0]), rest[1]
        lake.append("tools", tool_rows(n, tag))
    elif mode == "loop":
        k, n, tag = int(rest[0]), int(rest[1]), rest[2]
        for j in range(k):
            lake.append("tools", tool_rows(n, f"{tag}{j}"))
    elif mode == "die-staged":
        run = lake.run("test.die", {"mode": mode}, idempotent=False)
        run.append("tools", tool_rows(int(rest[0]), "doomed"))
        os.kill(os.getpid(), signal.SIGKILL)
    elif mode == "die-before-log":
        original = EventLog.append

        def append_then_die(self: EventLog, events: list) -> list[int]:
            if any(isinstance(e, TableCommitted) for e in events):
                os.kill(os.getpid(), signal.SIGKILL)
            return original(self, events)

        EventLog.append = append_then_die  # type: ignore[method-assign]
        with lake.run("test.die", {"mode": mode}, idempotent=False) as run:
            run.append("tools", tool_rows(int(rest[0]), "doomed"))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
