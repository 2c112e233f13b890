"""Resilience for every outbound call (RPC, S3): retries with exponential backoff and jitter, a
circuit breaker that stops calling a dependency that keeps failing, and a bulkhead that bounds
how many calls to one dependency are in flight at once, so a slow dependency ties up a bounded
number of threads and connections instead of all of them."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TypeVar

from obsrvr_ray.errors import ConfigError, SourceError, TransientSourceError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    base_delay: float = 0.2
    max_delay: float = 5.0

    def delay(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**attempt)], so clients do not retry in step."""
        return random.uniform(0, min(self.max_delay, self.base_delay * (2**attempt)))


class CircuitOpenError(TransientSourceError):
    """The breaker is open: the call was not attempted."""


class CircuitBreaker:
    """Stops calling a dependency after `threshold` consecutive failures; lets one trial call
    through after `reset_after` seconds (half-open) and closes again when it succeeds."""

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(self, name: str, threshold: int = 5, reset_after: float = 30.0) -> None:
        self.name = name
        self.threshold = threshold
        self.reset_after = reset_after
        self._failures = 0
        self._opened_at = 0.0
        self._state = self.CLOSED
        self._last_error = ""
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        with self._lock:
            if self._state == self.OPEN and time.monotonic() - self._opened_at >= self.reset_after:
                return self.HALF_OPEN
            return self._state

    def before_call(self) -> None:
        with self._lock:
            if self._state == self.OPEN:
                if time.monotonic() - self._opened_at < self.reset_after:
                    raise CircuitOpenError(
                        f"circuit breaker for {self.name} is open after {self._failures} consecutive "
                        f"failures; last error: {self._last_error}"
                    )
                self._state = self.HALF_OPEN

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._state = self.CLOSED

    def record_failure(self, error: Exception) -> None:
        with self._lock:
            self._failures += 1
            self._last_error = str(error)
            if self._state == self.HALF_OPEN or self._failures >= self.threshold:
                self._state = self.OPEN
                self._opened_at = time.monotonic()


class BulkheadFullError(TransientSourceError):
    """Every slot of the bulkhead stayed taken for its wait timeout: the call was not attempted."""


class Bulkhead:
    """At most `limit` calls to one dependency at once. A caller waits up to `max_wait` seconds
    for a slot, then gets BulkheadFullError naming the dependency (transient: worth trying again
    later, but not a failure of the dependency, so the breaker does not count it).

    A threading semaphore: the callers are threads (prefetching readers, the follower's loop).
    `in_use` and `rejected` are read by the metrics.
    """

    def __init__(self, name: str, limit: int = 8, max_wait: float = 10.0) -> None:
        if limit < 1:
            raise ConfigError(f"bulkhead for {name}: the limit of concurrent calls must be >= 1, got {limit}")
        if max_wait < 0:
            raise ConfigError(f"bulkhead for {name}: the wait timeout must be >= 0, got {max_wait}")
        self.name = name
        self.limit = limit
        self.max_wait = max_wait
        self._slots = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self._in_use = 0
        self._rejected = 0

    @property
    def in_use(self) -> int:
        with self._lock:
            return self._in_use

    @property
    def rejected(self) -> int:
        """Calls refused since the bulkhead was made (a counter)."""
        with self._lock:
            return self._rejected

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"in_use": self._in_use, "limit": self.limit, "rejected": self._rejected}

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for the duration of the block; the slot is released however the block ends."""
        if not self._slots.acquire(timeout=self.max_wait):
            with self._lock:
                self._rejected += 1
            raise BulkheadFullError(f"bulkhead for {self.name} is full: {self.limit} calls already in flight "
                                    f"for {self.max_wait:g} s", origin=self.name)
        with self._lock:
            self._in_use += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_use -= 1
            self._slots.release()


def call_with_retry(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    breaker: CircuitBreaker | None = None,
    bulkhead: Bulkhead | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `fn`, retrying TransientSourceError; other SourceErrors (a missing object) are final.

    Each attempt asks the breaker first (an open one refuses at once), then takes a bulkhead slot
    for the call only: backoff sleeps hold no slot. An open breaker or a full bulkhead ends the
    call at once: retrying would only wait longer for the same answer.
    """
    last: TransientSourceError | None = None
    for attempt in range(policy.attempts):
        if breaker is not None:
            breaker.before_call()
        try:
            with bulkhead.slot() if bulkhead is not None else nullcontext():
                result = fn()
        except BulkheadFullError:
            raise
        except TransientSourceError as exc:
            last = exc
            if breaker is not None:
                breaker.record_failure(exc)
            if attempt + 1 < policy.attempts:
                sleep(policy.delay(attempt))
            continue
        except SourceError:
            if breaker is not None:
                breaker.record_success()  # the dependency answered; the answer was "no"
            raise
        if breaker is not None:
            breaker.record_success()
        return result
    assert last is not None
    raise TransientSourceError(f"gave up after {policy.attempts} attempts: {last.cause}", origin=last.origin)
