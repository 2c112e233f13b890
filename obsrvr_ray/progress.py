"""The live progress line of a long job: ledgers/s, events/s, ETA.

On a terminal the line is redrawn in place; elsewhere (a Ray job's log, a CI log) a full line
is printed every `interval` seconds, so the log shows progress without a flood.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TextIO

_MINUTE, _HOUR = 60, 3600
_REDRAW = 0.5  # seconds between redraws of the line on a terminal


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= _HOUR:
        return f"{seconds // _HOUR}h{seconds % _HOUR // _MINUTE:02d}m"
    if seconds >= _MINUTE:
        return f"{seconds // _MINUTE}m{seconds % _MINUTE:02d}s"
    return f"{seconds}s"


@dataclass
class Timed:
    """A run's wall-clock span, for a report: started when made, finished when its runner says so
    (keyword-only, so a report's own fields come first)."""

    started: float = field(default_factory=time.monotonic, kw_only=True)
    finished: float | None = field(default=None, kw_only=True)

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started


class Progress:
    def __init__(self, total_ledgers: int, total_chunks: int, stream: TextIO, *, interval: float = 10.0,
                 live: bool | None = None) -> None:
        self.total_ledgers, self.total_chunks = total_ledgers, total_chunks
        self.stream = stream
        self.interval = interval
        self.live = stream.isatty() if live is None else live
        self.started = time.monotonic()
        self.last_print = 0.0
        self.ledgers = self.events = self.failed = self.chunks = 0

    def add(self, ledgers: int, events: int, failed: int) -> None:
        self.ledgers += ledgers
        self.events += events
        self.failed += failed
        self.chunks += 1

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.ledgers / elapsed
        share = self.ledgers / self.total_ledgers if self.total_ledgers else 1.0
        eta = _duration((self.total_ledgers - self.ledgers) / rate) if rate > 0 else "?"
        return (f"backfill {self.ledgers:,}/{self.total_ledgers:,} ledgers ({share:.0%})  "
                f"chunks {self.chunks}/{self.total_chunks}  {rate:,.1f} ledgers/s  "
                f"{self.events / elapsed:,.0f} events/s  failed {self.failed}  "
                f"elapsed {_duration(elapsed)}  ETA {eta}")

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.live and (force or now - self.last_print >= _REDRAW):
            self.stream.write("\r\033[K" + self.line())
        elif not self.live and (force or now - self.last_print >= self.interval):
            self.stream.write(self.line() + "\n")
        else:
            return
        self.stream.flush()
        self.last_print = now

    def close(self) -> None:
        self.tick(force=True)
        if self.live:
            self.stream.write("\n")
            self.stream.flush()
