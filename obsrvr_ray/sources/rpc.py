"""Read ledgers from a Stellar RPC node with `getLedgers` (JSON-RPC over HTTP)."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Generator, Iterator
from http import HTTPStatus
from typing import Any

import requests

from obsrvr_ray.errors import DecodeError, SourceError, TransientSourceError
from obsrvr_ray.ledger.framing import b64decode
from obsrvr_ray.ranges import Grid
from obsrvr_ray.resilience import Bulkhead, CircuitBreaker, RetryPolicy, call_with_retry
from obsrvr_ray.sources.base import LedgerRecord

MAX_PAGE = 200  # the largest page getLedgers serves
_WINDOW = re.compile(r"oldest ledger: (\d+) and the latest ledger: (\d+)")


def parse_window(message: str) -> tuple[int, int] | None:
    """(oldest, latest) from stellar-rpc's "must be between the oldest ledger: X and the latest
    ledger: Y" errors, the only place getLedgers states the range it can serve."""
    found = _WINDOW.search(message)
    return (int(found.group(1)), int(found.group(2))) if found else None


def _why(exc: BaseException) -> str:
    """The system's reason under requests' wrappers ('connection refused'), else the error itself."""
    seen, todo = set(), [exc]
    while todo:
        cause = todo.pop()
        if cause is None or id(cause) in seen:
            continue
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror[0].lower() + cause.strerror[1:]
        todo += [cause.__cause__, cause.__context__, getattr(cause, "reason", None),
                 *(a for a in cause.args if isinstance(a, BaseException))]
    return f"{type(exc).__name__}: {exc}"


class RpcError(SourceError):
    """A JSON-RPC error object returned by the node."""

    def __init__(self, message: str, *, code: int | None = None, **kw: Any) -> None:
        self.code = code
        super().__init__(message, **kw)


class RpcClient:
    """Minimal JSON-RPC client: timeouts, retries with backoff and jitter, a circuit breaker and
    a bulkhead (at most `bulkhead.limit` requests in flight from this client)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        bulkhead: Bulkhead | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or CircuitBreaker(f"rpc {url}")
        self.bulkhead = bulkhead or Bulkhead(f"rpc {url}", limit=4, max_wait=timeout)
        self.session = requests.Session()
        if headers:
            self.session.headers.update(headers)
        self._ids = itertools.count(1)

    def _call_once(self, method: str, params: dict | None) -> Any:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method}
        if params is not None:
            body["params"] = params
        try:
            resp = self.session.post(self.url, json=body, timeout=self.timeout)
        except requests.RequestException as exc:
            raise TransientSourceError(f"RPC unreachable ({_why(exc)})", origin=self.url) from exc
        if resp.status_code == HTTPStatus.TOO_MANY_REQUESTS or resp.status_code >= HTTPStatus.INTERNAL_SERVER_ERROR:
            raise TransientSourceError(f"RPC {method} answered HTTP {resp.status_code}", origin=self.url)
        if resp.status_code != HTTPStatus.OK:
            raise SourceError(f"RPC {method} answered HTTP {resp.status_code}: {resp.text[:200]}", origin=self.url)
        try:
            payload = resp.json()
        except ValueError as exc:
            raise TransientSourceError(f"RPC {method} answered with invalid JSON", origin=self.url) from exc
        if payload.get("error"):
            err = payload["error"]
            raise RpcError(
                f"RPC {method} error {err.get('code')}: {err.get('message')}", code=err.get("code"), origin=self.url
            )
        if "result" not in payload:
            raise TransientSourceError(f"RPC {method} answered without a result", origin=self.url)
        return payload["result"]

    def call(self, method: str, params: dict | None = None) -> Any:
        return call_with_retry(lambda: self._call_once(method, params), policy=self.retry, breaker=self.breaker,
                               bulkhead=self.bulkhead)

    def get_health(self) -> dict:
        return self.call("getHealth")

    def get_network(self) -> dict:
        return self.call("getNetwork")

    def get_latest_ledger(self) -> dict:
        return self.call("getLatestLedger")

    def get_ledgers(self, *, start: int | None = None, cursor: str | None = None, limit: int = MAX_PAGE) -> dict:
        params: dict[str, Any] = {"pagination": {"limit": limit}, "xdrFormat": "base64"}
        if cursor is not None:
            params["pagination"]["cursor"] = cursor
        else:
            params["startLedger"] = start
        return self.call("getLedgers", params)

    def close(self) -> None:
        self.session.close()


class RpcSource:
    grid = Grid(1)  # pages start at any ledger
    every_ledger = False  # what a page holds is the node's to say

    def __init__(self, url: str, *, poll_interval: float = 2.0, page_size: int = MAX_PAGE, **client_kw: Any):
        self.client = RpcClient(url, **client_kw)
        self.url = url
        self.poll_interval = poll_interval
        self.page_size = min(page_size, MAX_PAGE)
        self.description = f"Stellar RPC {url}"
        self._passphrase: str | None = None

    @property
    def network_passphrase(self) -> str | None:
        if self._passphrase is None:
            try:
                self._passphrase = self.client.get_network().get("passphrase")
            except SourceError:  # the node is down: reported per ledger by records()
                return None
        return self._passphrase

    @property
    def bulkhead(self) -> Bulkhead:
        return self.client.bulkhead

    def earliest(self) -> None:
        """Not told: getHealth's oldestLedger understates a node that serves older ledgers from
        a data lake, and only a getLedgers answer shows its window."""
        return None

    def latest(self) -> int | None:
        """The node's latestLedger (getLatestLedger)."""
        try:
            return int(self.client.get_latest_ledger()["sequence"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SourceError(f"getLatestLedger answered without a ledger sequence: {exc!r}", origin=self.url) from exc

    def _origin(self, seq: int) -> str:
        return f"{self.url} getLedgers {seq}"

    def _errors(self, seqs: range, exc: SourceError) -> Iterator[LedgerRecord]:
        for seq in seqs:
            err = type(exc)(exc.cause, sequence=seq, origin=exc.origin) if not isinstance(exc, RpcError) else \
                SourceError(exc.cause, sequence=seq, origin=exc.origin)
            yield LedgerRecord(seq, self._origin(seq), error=err)

    def records(self, start: int, end: int | None) -> Iterator[LedgerRecord]:
        """Pages of getLedgers from `start`, following the cursor. The node's retention window is
        learnt from its answer (a node with a data-lake fallback serves more than getHealth says)."""
        nxt = start
        cursor: str | None = None
        while end is None or nxt <= end:
            limit = self.page_size if end is None else min(self.page_size, end - nxt + 1)
            try:
                page = self.client.get_ledgers(start=nxt if cursor is None else None, cursor=cursor, limit=limit)
            except RpcError as exc:
                nxt, done = yield from self._refused(exc, nxt, end)
                if done:
                    return
                cursor = None
                continue
            except SourceError as exc:
                if end is None:
                    raise
                yield from self._errors(range(nxt, end + 1), exc)
                return
            ledgers = page.get("ledgers") or []
            if not ledgers:
                if end is not None:
                    yield from self._errors(range(nxt, end + 1), SourceError(
                        f"getLedgers returned no ledgers from {nxt} (latestLedger {page.get('latestLedger')})",
                        origin=self.url))
                    return
                time.sleep(self.poll_interval)
                cursor = None
                continue
            nxt, done = yield from self._page_records(ledgers, nxt, end)
            if done:
                return
            cursor = page.get("cursor") or None

    def _refused(self, exc: RpcError, nxt: int, end: int | None) -> Generator[LedgerRecord, None, tuple[int, bool]]:
        """The records a getLedgers refusal settles from `nxt`, then (where to go on, whether the range
        is done): ledgers older than the node keeps are reported and skipped; at the tip a follower
        waits; a range beyond the tip, or a refusal without a window, fails what is left."""
        window = parse_window(exc.cause)
        if window is None:
            if end is None:
                raise exc
            yield from self._errors(range(nxt, end + 1), exc)
            return nxt, True
        oldest, latest = window
        if nxt < oldest:  # older than the node keeps: report each ledger, go on from oldest
            stop = oldest - 1 if end is None else min(end, oldest - 1)
            yield from self._errors(range(nxt, stop + 1), SourceError(
                f"outside the RPC node's retention window (oldestLedger {oldest}, latestLedger {latest})",
                origin=self.url))
            return stop + 1, False
        if end is None:  # at the tip: wait for the next ledger to close
            time.sleep(self.poll_interval)
            return nxt, False
        yield from self._errors(range(nxt, end + 1), SourceError(
            f"not closed yet on the RPC node (latestLedger {latest})", origin=self.url))
        return nxt, True

    def _page_records(self, ledgers: list[dict], nxt: int, end: int | None
                      ) -> Generator[LedgerRecord, None, tuple[int, bool]]:
        """The records of one page from `nxt`, then (the next ledger wanted, whether `end` was passed)."""
        for item in ledgers:
            seq = int(item["sequence"])
            if seq < nxt:
                continue
            if end is not None and seq > end:
                return nxt, True
            if seq > nxt:  # the node skipped ledgers: report them, never hide a gap
                yield from self._errors(range(nxt, seq), SourceError("getLedgers skipped this ledger",
                                                                     origin=self.url))
            yield self._record(item, seq)
            nxt = seq + 1
        return nxt, False

    def _record(self, item: dict, seq: int) -> LedgerRecord:
        origin = self._origin(seq)
        try:
            data = b64decode(item["metadataXdr"], sequence=seq, origin=origin)
        except (KeyError, DecodeError) as exc:
            err = exc if isinstance(exc, DecodeError) else DecodeError(
                "ledger has no metadataXdr", sequence=seq, origin=origin)
            return LedgerRecord(seq, origin, error=err)
        return LedgerRecord(seq, origin, data=data)

    def close(self) -> None:
        self.client.close()
