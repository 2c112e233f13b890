"""The follower's loop: read new ledgers from Stellar RPC `getLedgers`, fill every gap, extract
each page at once and `publish` its ledgers' transfers, and `commit` the extracted ledgers to the
dataset in cells of a fixed grid, multiples of `commit_every` ledgers (so files are not one per
ledger, and two followers that ever run at once — an upgrade starting the new one before the
old one stops — commit the very same ranges, which the dataset admits once). A cell is committed
when it is complete; ledgers of a partial cell are read again after a restart.
Plain Python: obsrvr_ray/live/service.py runs it in a thread, inside the Serve deployment.

- Where it starts: the ledger after the dataset's last committed one (the cursor survives any
  restart because it is the dataset), else `start`. Ledgers published but not yet committed when
  the process dies are read and published again: subscribers keep the last ledger they got and
  skip repeats.
- Gaps: a ledger missing from a page (an RPC that skipped, fell behind or restarted) is asked for
  again alone; a ledger older than the node's retention is read from the data lake. Neither is
  ever skipped silently: a ledger no source has is recorded as a failure of its chunk.
- When to ask: as soon as the next ledger is due. Its due time is the last ledger's close time
  plus the network's close interval, the median of the intervals between recent headers' close
  times; until then the follower does not ask. Once due and while the node does not have it
  (RPC ingests a ledger a moment after it closes), it asks again after a short back-off
  (`tip_retry`, doubling up to `tip_retry_max`); after two intervals without a ledger (a halted
  network) it backs off up to `poll_interval`. A due time further off than one interval means
  the node's clock and ours disagree (or the headers' times are not wall-clock time): then the
  back-off alone sets the pace. Before any close time is known it polls every `poll_interval`.
- Faults: RPC errors back off with jitter (the client's breaker stops hammering a dead node);
  the status says degraded, readiness turns false, and the loop keeps trying. So does a commit
  the store refuses. A bug (a BugError naming the ledger) stops the follower, not ready, saying why.
- The hash chain: each ledger's previousLedgerHash must be the hash of the last good ledger
  before it (at start, the dataset's last committed ledger, whose hash the ledgers table holds).
  A ledger that does not link (the node restarted on another chain, a fork) stops the follower
  at the last good ledger: nothing from it on is published or committed, the state is
  chain_broken (readiness false, a metric, an alert), and the loop keeps polling; the data lake
  is asked for that ledger too. It goes on once a ledger links again. Only a ledger whose header
  cannot be read (a failure recorded as such) is not linked: the ledger after it has nothing to
  be checked against.
- The status is shown by the API (/health, /metrics): error texts in it have the parts of the
  RPC URL that may hold a credential (user info, path, query) masked.
"""

from __future__ import annotations

import itertools
import random
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

import pyarrow as pa

from obsrvr_ray.chunks.process import header_only
from obsrvr_ray.errors import SourceError
from obsrvr_ray.ledger.framing import b64decode
from obsrvr_ray.ledger.validate import ChainBreak, ChainChecker, Link
from obsrvr_ray.resilience import Bulkhead
from obsrvr_ray.sources.base import LedgerRecord, LedgerSource
from obsrvr_ray.sources.rpc import MAX_PAGE, RpcClient, RpcError, parse_window
from obsrvr_ray.table.tableset import STORE_ERRORS


class Extracted(Protocol):
    """What `extract` returns for a page of records; `commit` receives a list of them."""

    transfers: dict[int, pa.Table]  # per ledger, for subscribers


Extract = Callable[[list[LedgerRecord]], Extracted]
Commit = Callable[[list[Extracted]], None]
Publish = Callable[[int, pa.Table], None]
MASK = "***"
CHAIN_BROKEN = "chain_broken"
CLOSE_TIMES_KEPT = 17  # headers' close times the close interval is learnt from (16 intervals)


def url_masker(url: str) -> Callable[[str], str]:
    """A function masking, in a text, what in `url` may be a credential: providers put API keys in
    the user info, the path or the query. The URL itself becomes scheme://host:port/*** (errors
    name it as their origin); requests' messages quote the path and query alone."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    path_query = parts.path + (f"?{parts.query}" if parts.query else "")
    hidden = [p for p in (path_query, parts.path, parts.query, userinfo) if p.strip("/")]
    if not hidden:
        return lambda text: text
    host = parts.netloc.rpartition("@")[2]
    shown = f"{parts.scheme}://{host}/{MASK}"

    def mask(text: str) -> str:
        text = text.replace(url, shown)
        for secret in sorted(hidden, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text

    return mask


@dataclass
class FollowerStatus:
    state: str = "starting"  # starting, catching_up, live, degraded, chain_broken, stopped
    next_ledger: int | None = None  # the next ledger to process
    committed_through: int | None = None
    network_latest: int | None = None
    lag: int | None = None  # ledgers the follower is behind the network
    last_error: str | None = None
    last_progress: float | None = None  # unix time of the last processed ledger
    ledgers_processed: int = 0
    gaps_filled: int = 0
    lake_fallbacks: int = 0
    failures: int = 0
    chain_broken_at: int | None = None  # the ledger that does not link to the last good one, while stopped there
    breaker: str = "closed"
    bulkheads: dict[str, dict[str, int]] = field(default_factory=dict)  # per dependency: in_use, limit, rejected

    def as_dict(self) -> dict:
        return asdict(self)


class LedgerFollower:
    def __init__(self, rpc: RpcClient, extract: Extract, commit: Commit, publish: Publish, *, start: int,
                 fallback: LedgerSource | None = None, commit_every: int = 12, poll_interval: float = 1.0,
                 page_size: int = MAX_PAGE, max_backoff: float = 30.0, tip_retry: float = 0.05,
                 tip_retry_max: float = 0.1, bulkheads: Mapping[str, Bulkhead] | None = None,
                 link: Link | None = None) -> None:
        self.rpc = rpc
        self.bulkheads = dict(bulkheads) if bulkheads is not None else {"rpc": rpc.bulkhead}
        self._mask = url_masker(rpc.url)
        self.extract = extract
        self.commit = commit
        self.publish = publish
        self.fallback = fallback
        self.commit_every = commit_every
        self.poll_interval = poll_interval
        self.page_size = min(page_size, MAX_PAGE)
        self.max_backoff = max_backoff
        self.tip_retry, self.tip_retry_max = tip_retry, tip_retry_max
        self.status = FollowerStatus(next_ledger=start)
        self._pending: list[Extracted] = []  # pages of the current, incomplete cell
        self._complete = False  # the pending pages fill their cell: to commit before reading on
        self._chain = ChainChecker(link)  # the last good ledger, when known
        self._failures = 0
        self._closes: deque[tuple[int, int]] = deque(maxlen=CLOSE_TIMES_KEPT)  # (sequence, close time) read
        self._misses = 0  # requests since the last new ledger that found nothing new
        self._last_new = time.monotonic()  # when the last new ledger was read
        self._stop = threading.Event()
        self._observe()

    # -- one step --------------------------------------------------------------------------
    def cell_end(self, sequence: int) -> int:
        """The last ledger of the commit cell holding `sequence`."""
        return (sequence // self.commit_every + 1) * self.commit_every - 1

    def step(self) -> int:
        """Fetch what is new (at most one page, never past the current cell), commit a cell once
        it is complete; the number of ledgers read."""
        if self._complete and not self._flush():
            return 0
        start = self.status.next_ledger
        try:
            records, latest = self._fetch(start, min(self.page_size, self.cell_end(start) - start + 1))
        except SourceError as exc:
            self._fault(exc)
            return 0
        self._failures = 0
        self.status.network_latest = latest
        self._observe()
        records, broken = self._linked(records)
        if records:
            batch = self.extract(records)
            for seq in sorted(batch.transfers):
                self.publish(seq, batch.transfers[seq])
            self._pending.append(batch)
            self._complete = records[-1].sequence == self.cell_end(records[-1].sequence)
            self.status.next_ledger = records[-1].sequence + 1
            self.status.ledgers_processed += len(records)
            self.status.failures += sum(1 for r in records if not r.ok)
            self.status.last_progress = time.time()
        behind = (latest - self.status.next_ledger + 1) if latest is not None else None
        self.status.lag = max(0, behind) if behind is not None else None
        flushed = not self._complete or self._flush()
        if broken is not None:
            self._chain_broken(*broken)
        elif flushed:
            self.status.state = "live" if (behind is not None and behind <= 0) else "catching_up"
            self.status.last_error = None
            self.status.chain_broken_at = None
        return len(records)

    def _linked(self, records: list[LedgerRecord]) -> tuple[list[LedgerRecord], tuple[ChainBreak, str] | None]:
        """The records up to the first ledger that does not link to the last good ledger (that
        ledger from the data lake instead, when the lake's links), and the break found with the
        origin of the ledger that does not link, if any. The last good ledger moves on over the
        records returned."""
        linked = []
        for record in records:
            header = header_only(record)
            if header is None or header.sequence != record.sequence:  # another ledger's bytes fail on their own
                self._chain.forget()
                linked.append(record)
                continue
            taken = record
            found = self._chain.link_break(header)
            if found is not None:
                taken = self._relink_from_lake(header.sequence)
                if taken is None:
                    return linked, (found, record.origin)
                header = header_only(taken)
            self._chain.accept(header)
            self._closes.append((header.sequence, header.close_time))
            linked.append(taken)
        return linked, None

    def _relink_from_lake(self, seq: int) -> LedgerRecord | None:
        """The lake's ledger `seq` when it links to the last good ledger (the node serves another
        chain, the lake the one the dataset holds); else None."""
        if self.fallback is None:
            return None
        record = self._from_lake(seq, "its ledger does not link to the last good ledger")
        header = header_only(record)
        if header is None or header.sequence != seq or self._chain.link_break(header) is not None:
            return None
        return record

    def _chain_broken(self, found: ChainBreak, origin: str) -> None:
        """Hold at the last good ledger: nothing from the ledger that does not link on is kept."""
        self.status.state = CHAIN_BROKEN
        self.status.chain_broken_at = found.current
        lake = f"; the data lake has no ledger {found.current} that links either" if self.fallback is not None else ""
        self.status.last_error = self._mask(
            f"chain broken at {found.current}: {found.describe()} (from {origin}{lake}); "
            f"holding at ledger {found.previous} until a ledger {found.current} links to it")

    def _fetch(self, start: int, limit: int) -> tuple[list[LedgerRecord], int | None]:
        try:
            page = self.rpc.get_ledgers(start=start, limit=limit)
        except RpcError as exc:
            window = parse_window(exc.cause)
            if window is None:
                raise
            oldest, latest = window
            if start < oldest:  # older than the node keeps: the data lake has it
                end = min(oldest - 1, start + limit - 1)
                return [self._from_lake(seq, f"outside the RPC node's retention (oldest {oldest})")
                        for seq in range(start, end + 1)], latest
            return [], latest  # at the tip: nothing new yet
        latest = page.get("latestLedger")
        found = {}
        for item in page.get("ledgers") or []:
            seq = int(item["sequence"])
            origin = f"{self.rpc.url} getLedgers {seq}"
            try:
                found[seq] = LedgerRecord(seq, origin, data=b64decode(item["metadataXdr"], sequence=seq, origin=origin))
            except (KeyError, SourceError) as exc:
                found[seq] = LedgerRecord(seq, origin, error=exc if isinstance(exc, SourceError) else
                                          SourceError("ledger without metadataXdr", sequence=seq, origin=origin))
        # Every ledger up to the page's end that the node has closed is due, present or not: a
        # missing one, even the last, is a gap to fill, not the tip.
        last = max(found, default=start - 1)
        if latest is not None:
            last = max(last, min(start + limit - 1, int(latest)))
        return [found[seq] if seq in found else self._fill_gap(seq) for seq in range(start, last + 1)], latest

    def _fill_gap(self, seq: int) -> LedgerRecord:
        """A ledger a page left out: asked for alone, then from the lake; else a failure row."""
        self.status.gaps_filled += 1
        try:
            page = self.rpc.get_ledgers(start=seq, limit=1)
            for item in page.get("ledgers") or []:
                if int(item["sequence"]) == seq:
                    origin = f"{self.rpc.url} getLedgers {seq}"
                    return LedgerRecord(seq, origin, data=b64decode(item["metadataXdr"], sequence=seq, origin=origin))
        except SourceError:
            pass
        return self._from_lake(seq, "missing from getLedgers pages")

    def _from_lake(self, seq: int, why: str) -> LedgerRecord:
        if self.fallback is not None:
            self.status.lake_fallbacks += 1
            for record in self.fallback.records(seq, seq):
                if record.ok:
                    return record
                return LedgerRecord(seq, record.origin, error=SourceError(
                    f"{why}; the data lake failed too: {record.error.cause}", sequence=seq, origin=record.origin))
        return LedgerRecord(seq, self.rpc.url, error=SourceError(f"{why}, and no data lake is configured",
                                                                 sequence=seq, origin=self.rpc.url))

    def _flush(self) -> bool:
        """Commit the pending pages (a complete cell); False when the commit failed (they stay
        pending, and the next step tries again before reading further)."""
        try:
            self.commit(self._pending)
        except STORE_ERRORS as exc:  # the store is down: keep the pages, report, try again next step
            self._failures += 1
            self.status.state = "degraded"
            self.status.last_error = self._mask(f"commit failed: {type(exc).__name__}: {exc}")
            return False
        self._pending, self._complete = [], False
        self.status.committed_through = self.status.next_ledger - 1
        return True

    def _fault(self, exc: SourceError) -> None:
        self._failures += 1
        self.status.state = "degraded"
        self.status.last_error = self._mask(str(exc))
        self._observe()

    def _observe(self) -> None:
        """The resilience state the metrics report: the RPC breaker, and each bulkhead's slots."""
        self.status.breaker = self.rpc.breaker.state
        self.status.bulkheads = {name: b.snapshot() for name, b in self.bulkheads.items()}

    def backoff(self) -> float:
        """Full jitter, doubling with each consecutive failure."""
        if not self._failures:
            return self.poll_interval
        return random.uniform(0, min(self.max_backoff, self.poll_interval * 2 ** self._failures))

    def close_interval(self) -> float | None:
        """The network's close interval as its recent headers show it (the median, in seconds:
        close times are whole seconds); None until two consecutive ledgers have been read."""
        closes = list(self._closes)
        gaps = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in itertools.pairwise(closes) if b[0] > a[0]]
        return max(statistics.median(gaps), 1.0) if gaps else None

    def next_due(self) -> float | None:
        """When (Unix time) the ledger after the last one read is due to close; None if unknown."""
        interval = self.close_interval()
        if interval is None or self._closes[-1][0] != self.status.next_ledger - 1:
            return None
        return self._closes[-1][1] + interval

    def pause(self, read: int) -> float:
        """Seconds to wait after a step that read `read` ledgers: none while catching up; at the
        tip, until the next ledger is due, then a short back-off while the node lacks it."""
        if read:
            self._misses, self._last_new = 0, time.monotonic()
        else:
            self._misses += 1
        if self._failures or self.status.state == CHAIN_BROKEN:  # faults and a broken chain keep their pace
            return 0.0 if read else self.backoff()
        if read and self.status.lag:
            return 0.0  # catching up
        due, interval = self.next_due(), self.close_interval()
        if due is None or interval is None:
            return 0.0 if read else self.poll_interval
        until_due = due - time.time()
        if 0 < until_due <= interval:
            return until_due
        if read:
            return 0.0  # due already: ask at once
        halted = time.monotonic() - self._last_new > 2 * interval  # no ledger for two intervals: back off further
        cap = max(self.tip_retry_max, self.poll_interval) if halted else self.tip_retry_max
        return min(cap, self.tip_retry * 2 ** (self._misses - 1))

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> None:
        try:
            while not self._stop.is_set():
                wait = self.pause(self.step())
                if wait > 0:
                    self._stop.wait(wait)
        except Exception as exc:  # a bug (a BugError names the ledger): the status says so, readiness turns false
            self.status.state = "stopped"
            self.status.last_error = self._mask(f"{type(exc).__name__}: {exc}")
            raise
        self.status.state = "stopped"  # a partial cell is not committed: the next follower reads it again

    @property
    def stopped(self) -> threading.Event:
        return self._stop

    def stop(self) -> None:
        self._stop.set()
