"""Retries with exponential backoff and jitter, and a circuit breaker, for every outbound call."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from obsrvr_ray.errors import SourceError, TransientSourceError

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


def call_with_retry(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    breaker: CircuitBreaker | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `fn`, retrying TransientSourceError; other SourceErrors (a missing object) are final."""
    last: TransientSourceError | None = None
    for attempt in range(policy.attempts):
        if breaker is not None:
            breaker.before_call()
        try:
            result = fn()
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
