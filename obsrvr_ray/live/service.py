"""The live follower's service, hosted by the Serve deployment obsrvr_ray.serve.deployments.FollowerDeployment
(one replica, restarted by Serve if its process dies). It runs obsrvr_ray.live.follow.LedgerFollower in
a thread, commits to the same dataset as the backfill (the same chunk commit protocol, so each
ledger is there exactly once), and holds the newest ledgers' transfers for subscribers
(RecentLedgers).

Its position is the dataset itself: a restarted follower resumes after the last committed
ledger, and links the first ledger it reads to that ledger's hash in the ledgers table (so a
node that came back on another chain is caught across a restart too).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field, replace

import pyarrow as pa
import pyarrow.compute as pc

from obsrvr_ray.chunks.job import output_shape
from obsrvr_ray.chunks.plan import Segment, WorkUnit
from obsrvr_ray.chunks.process import ChunkSettings, commit_chunk, commit_from_rows, extract_records
from obsrvr_ray.errors import Failure
from obsrvr_ray.ledger.validate import Link
from obsrvr_ray.live.follow import LedgerFollower
from obsrvr_ray.live.recent import RecentLedgers, mark_failed
from obsrvr_ray.query import TableReader
from obsrvr_ray.resilience import Bulkhead, CircuitBreaker, RetryPolicy
from obsrvr_ray.schema import TOKEN_TRANSFERS, TRANSFERS_TABLE
from obsrvr_ray.sources.base import LedgerRecord
from obsrvr_ray.sources.open import SourceOptions, open_source
from obsrvr_ray.sources.rpc import RpcClient
from obsrvr_ray.table.location import TableLocation
from obsrvr_ray.table.maintenance import MaintenancePolicy, MaintenanceStatus, maintain
from obsrvr_ray.table.tableset import TableSet

NAME = "obsrvr-follower"


@dataclass(frozen=True)
class FollowerConfig:
    rpc_url: str
    settings: ChunkSettings  # tables, output dataset, extraction options (network passphrase...)
    start: int  # the first ledger, when the dataset has none yet
    lake: str | None = None  # data lake for ledgers older than the RPC node's retention
    lake_options: SourceOptions = field(default_factory=SourceOptions)
    commit_every: int = 12  # ledgers per commit cell (fixed grid: multiples of it)
    poll_interval: float = 1.0  # seconds between polls until the headers show the close interval; and at most
    tip_retry: float = 0.05  # first back-off once the next ledger is due and the node lacks it (doubles)...
    tip_retry_max: float = 0.1  # ...up to this (see live/follow.py: when the follower asks)
    recent_ledgers: int = 720
    rpc_timeout: float = 10.0  # seconds per getLedgers request
    rpc_max_concurrent: int = 4  # RPC requests in flight at once (bulkhead); the lake's is lake_options'
    bulkhead_wait: float = 10.0  # seconds a request waits for a free slot before it fails
    maintenance: MaintenancePolicy | None = field(default_factory=MaintenancePolicy)  # None: no schedule


@dataclass
class ExtractedPage:
    """One page the follower extracted: its ledgers, their rows and failures (committed with the
    rest of their cell), and per-ledger transfers for subscribers (a ledger with a failure marked
    by recent.FAILED in its table's metadata)."""

    first: int
    last: int
    tables: dict[str, pa.Table]
    failures: list[Failure]
    transfers: dict[int, pa.Table]


def follower_tables(config: FollowerConfig) -> TableSet:
    output = config.settings.output
    return TableSet(TableLocation(output.location, output.s3), output.compression)


def resume_point(config: FollowerConfig) -> int:
    committed = follower_tables(config).committed()
    last = max((end for _, end in committed), default=None)
    return config.start if last is None else max(config.start, last + 1)


def resume_link(config: FollowerConfig, resume: int) -> Link | None:
    """The dataset's ledger before `resume` as (sequence, header hash), for the hash chain; None
    when the dataset has no ledgers table or no row of it (nothing yet, or a failed ledger)."""
    if "ledgers" not in config.settings.tables:
        return None
    output = config.settings.output
    row = TableReader(output.location, output.s3).ledger(resume - 1)
    return (resume - 1, bytes.fromhex(row["ledger_hash"])) if row is not None else None


class FollowerService:
    """Everything the actor does, without Ray (tests run it in-process too)."""

    def __init__(self, config: FollowerConfig) -> None:
        self.config = config
        follower_tables(config).ensure(output_shape(config.settings, "live"), config.settings.tables)
        self.recent = RecentLedgers(config.recent_ledgers)
        # The follower checks the hash chain as it reads (LedgerFollower._linked, the one check):
        # extraction does not check it again.
        self._extract_settings = replace(config.settings, chain_check=False)
        rpc = RpcClient(config.rpc_url, timeout=config.rpc_timeout,
                        retry=RetryPolicy(attempts=2, base_delay=0.2, max_delay=2.0),
                        breaker=CircuitBreaker(f"rpc {config.rpc_url}", threshold=3, reset_after=5.0),
                        bulkhead=Bulkhead(f"rpc {config.rpc_url}", limit=config.rpc_max_concurrent,
                                          max_wait=config.bulkhead_wait))
        fallback = open_source(config.lake, config.lake_options) if config.lake else None
        bulkheads = {"rpc": rpc.bulkhead}
        if fallback is not None and fallback.bulkhead is not None:
            bulkheads["lake"] = fallback.bulkhead
        start = resume_point(config)
        self.follower = LedgerFollower(rpc, self._extract, self._commit, self.recent.add, start=start,
                                 fallback=fallback, commit_every=config.commit_every,
                                 poll_interval=config.poll_interval, tip_retry=config.tip_retry,
                                 tip_retry_max=config.tip_retry_max, bulkheads=bulkheads,
                                 link=resume_link(config, start))
        self._thread = threading.Thread(target=self.follower.run, name="follower", daemon=True)
        self.maintenance = MaintenanceStatus()
        self._maintainer = threading.Thread(target=self._maintain, name="table-maintenance", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if self.config.maintenance is not None:
            self._maintainer.start()

    def _maintain(self) -> None:
        """Compact, retain and vacuum on the policy's schedule, beside the follower (its own
        TableSet: the follower's commits and readers' snapshots go on meanwhile)."""
        policy, tables = self.config.maintenance, follower_tables(self.config)
        while not self.follower.stopped.wait(policy.compact_every):
            try:
                maintain(tables, policy, self.maintenance)
            except Exception as exc:  # the store is down, a conflict: report it, try at the next run
                self.maintenance.last_error = f"{type(exc).__name__}: {exc}"

    def _extract(self, records: list[LedgerRecord]) -> ExtractedPage:
        """A page's rows (its ledgers already linked by the follower), and each ledger's transfers:
        what subscribers get and REST reads from memory, not extracted again."""
        first, last = records[0].sequence, records[-1].sequence
        unit = WorkUnit((first, last), 0, (Segment(first, last, False),))
        settings = self._extract_settings
        tables, report = extract_records(unit, records, settings)
        transfers = settings.extract.filter.apply(tables.get(TRANSFERS_TABLE, TOKEN_TRANSFERS.empty_table()))
        failed = {f.sequence for f in report.failures}
        # Rows come in ledger order: each ledger's are one slice.
        counts = pc.value_counts(transfers["ledger_sequence"]).flatten() if transfers.num_rows else None
        count_of = dict(zip(*(c.to_pylist() for c in counts), strict=True)) if counts is not None else {}
        per_ledger, offset = {}, 0
        for seq in range(first, last + 1):
            rows_of = transfers.slice(offset, count_of.get(seq, 0))
            offset += rows_of.num_rows
            per_ledger[seq] = mark_failed(rows_of) if seq in failed else rows_of
        return ExtractedPage(first, last, tables, report.failures, per_ledger)

    def _commit(self, pages: list[ExtractedPage]) -> None:
        """The pages' rows as one chunk, through the backfill's commit protocol (no second extraction)."""
        began = time.monotonic()
        first, last = pages[0].first, pages[-1].last
        unit = WorkUnit((first, last), 0, (Segment(first, last, False),))
        tables = {table: pa.concat_tables([page.tables[table] for page in pages])
                  for table in self.config.settings.tables}
        failures = [f for page in pages for f in page.failures]
        commit_chunk(commit_from_rows(unit, tables, failures, self.config.settings, writer="live"),
                     self.config.settings, began)

    def status(self) -> dict:
        return {**self.follower.status.as_dict(), "maintenance": asdict(self.maintenance)}

    def recent_table(self, after: int | None = None) -> pa.Table:
        """Transfers of the newest ledgers; by default those the dataset does not hold yet (the
        rest is in the dataset, and queries read it there)."""
        if after is None:
            after = self.follower.status.committed_through
        return self.recent.table(after)

    def stop(self) -> None:
        self.follower.stop()
        self._thread.join(timeout=30)

