"""How far a source reaches, asked before a run plans anything, and what the terminal is told
while a source cannot be reached.

A range past the newest ledger a source holds is refused at once (unless the run is asked to
wait for it): otherwise each missing ledger fails on its own, or a run waits without end. A
source that cannot be reached is said on stderr at once, with the patience left, instead of
only in the JSON logs while the run waits in silence.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from obsrvr_ray.errors import SourceError, TransientSourceError
from obsrvr_ray.ranges import Range, check_within
from obsrvr_ray.resilience import RetryPolicy
from obsrvr_ray.sources.base import LedgerSource

# A source found unavailable is asked again after these delays (full jitter), for as long as the
# run's patience allows from its first failure; the clients' own retries and breakers come first.
SOURCE_BACKOFF = RetryPolicy(base_delay=2.0, max_delay=60.0)


class PatienceNotice:
    """One line on the terminal when a source is unavailable: where, why, and for how long it
    will still be retried. Said again when the cause changes, else at most every `every` s."""

    def __init__(self, prefix: str, stream: TextIO | None = None, every: float = 10.0) -> None:
        self.prefix = prefix
        self.stream = stream
        self.every = every
        self._last: tuple[str, float] | None = None

    def unavailable(self, error: SourceError, left: float) -> None:
        where = f"{error.origin}: " if error.origin else ""
        text = f"{where}{error.cause}"
        now = time.monotonic()
        if self._last is not None and self._last[0] == text and now - self._last[1] < self.every:
            return
        self._last = (text, now)
        print(f"{self.prefix}: {text}; retrying for {max(0.0, left):.0f} s more", file=self.stream or sys.stderr,
              flush=True)


def newest_ledger(source: LedgerSource, patience: float, notice: PatienceNotice,
                  sleep: Callable[[float], None] = time.sleep) -> int | None:
    """`source.latest()`, asked again while the source is unavailable, for up to `patience` s;
    each failure is told at once. After that the source's error is raised."""
    began, attempt = time.monotonic(), 0
    while True:
        try:
            return source.latest()
        except TransientSourceError as exc:
            attempt += 1
            wait = SOURCE_BACKOFF.delay(attempt)
            left = patience - (time.monotonic() - began)
            if left < wait:
                raise SourceError(f"unavailable for {patience:g} s: {exc.cause}", origin=exc.origin) from exc
            notice.unavailable(exc, left)
            sleep(wait)


def check_reach(source: LedgerSource, ranges: tuple[Range, ...], *, wait: bool, patience: float,
                notice: PatienceNotice, poll: float = 5.0) -> None:
    """Refuse `ranges` past the source's newest ledger (a ConfigError naming both), or with
    `wait`, block until the source holds their last ledger, telling the terminal what it waits for."""
    if not ranges:
        return
    latest = newest_ledger(source, patience, notice)
    if not wait:
        check_within(ranges, latest, source.description)
        return
    last, told = ranges[-1][1], -1
    while latest is None or latest < last:
        if latest != told:  # a line when the source moves on, not one per poll
            print(f"{notice.prefix}: waiting for ledger {last}; {source.description} holds up to "
                  f"{latest if latest is not None else 'none yet'}", file=notice.stream or sys.stderr, flush=True)
            told = latest
        time.sleep(poll)
        latest = newest_ledger(source, patience, notice)
