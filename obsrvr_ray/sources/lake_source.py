"""Read ledgers from a galexie data lake on a local disk or S3."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterator

from obsrvr_ray.errors import DecodeError, LedgerError, SourceError, ValidationError
from obsrvr_ray.ledger.decode import peek_sequence, split_batch
from obsrvr_ray.ledger.framing import decompress
from obsrvr_ray.objectstore import ObjectNotFound, ObjectStore
from obsrvr_ray.ranges import Grid
from obsrvr_ray.resilience import Bulkhead, CircuitBreaker, RetryPolicy, call_with_retry
from obsrvr_ray.sources.base import LedgerRecord, ordered_prefetch
from obsrvr_ray.sources.lake_layout import CONFIG_KEY, LakeConfig, layout_names


class LakeSource:
    every_ledger = True  # an error record for a ledger whose object is missing or bad

    def __init__(
        self,
        store: ObjectStore,
        config: LakeConfig | None = None,
        *,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        bulkhead: Bulkhead | None = None,
        prefetch: int = 8,
        poll_interval: float = 2.0,
    ) -> None:
        self.store = store
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or CircuitBreaker(f"lake {store.url}")
        # By default as many object reads at once as one iteration prefetches: the bound then
        # matters when several iterations share the source (the follower's lake fallback, readers).
        self.bulkhead = bulkhead or Bulkhead(f"lake {store.url}", limit=max(1, prefetch))
        self.prefetch = prefetch
        self.poll_interval = poll_interval
        self._config = config
        self.description = f"data lake {store.url}"
        self._legacy_ext: bool | None = None  # learnt from the first object found

    @property
    def config(self) -> LakeConfig:
        """The lake's manifest, read on first use (SEP-54 defaults when the lake has none)."""
        if self._config is None:
            self._config = self._read_config()
        return self._config

    def _read_config(self) -> LakeConfig:
        try:
            data = call_with_retry(lambda: self.store.get(CONFIG_KEY), policy=self.retry, breaker=self.breaker,
                                   bulkhead=self.bulkhead)
        except ObjectNotFound:
            return LakeConfig()
        except SourceError as exc:  # same class: an unreachable store stays transient, worth retrying later
            raise type(exc)(f"cannot read the lake manifest: {exc.cause}",
                            origin=self.store.describe(CONFIG_KEY)) from exc
        return LakeConfig.from_json(data, origin=self.store.describe(CONFIG_KEY))

    @property
    def network_passphrase(self) -> str | None:
        try:
            return self.config.network_passphrase
        except SourceError:  # unreadable manifest: reported per ledger by records()
            return None

    @property
    def grid(self) -> Grid:
        """Its batch objects, within its partitions."""
        return Grid(self.config.ledgers_per_batch, self.config.ledgers_per_partition)

    def earliest(self) -> None:
        """Not told: the oldest object is the last of every listing, which means listing all."""
        return None

    def latest(self) -> int | None:
        """The last ledger of the lake's newest object: the first batch object of the first
        partition in the store's order, found with two short listings however large the lake."""
        config = self.config  # read (and retried) on its own
        return call_with_retry(lambda: self._newest(config), policy=self.retry, breaker=self.breaker,
                               bulkhead=self.bulkhead)

    def _newest(self, config: LakeConfig) -> int | None:
        if config.batches_per_partition == 1:  # batch objects at the root, no partitions
            return next((last for _, last in layout_names(self.store.children(), partition=False)), None)
        for partition, _ in layout_names(self.store.children(), partition=True):
            for _, last in layout_names(self.store.children(partition), partition=False):
                return last
        return None

    def _get_batch_object(self, batch_start: int) -> tuple[str, bytes]:
        order = [False, True] if self._legacy_ext is not True else [True, False]
        missing: ObjectNotFound | None = None
        for legacy in order:
            key = self.config.batch_key(batch_start, legacy_extension=legacy)
            try:
                data = call_with_retry(lambda k=key: self.store.get(k), policy=self.retry, breaker=self.breaker,
                                       bulkhead=self.bulkhead)
            except ObjectNotFound as exc:
                missing = missing or exc
                continue
            self._legacy_ext = legacy
            return key, data
        assert missing is not None
        raise missing

    def fetch_batch(self, batch: tuple[int, int]) -> list[LedgerRecord]:
        """One record per ledger of one batch object; a failure of the object (unreadable, or
        content other than its key names) becomes an error record for every ledger of its range."""
        b_start, b_end = batch
        key = self.config.batch_key(b_start, legacy_extension=bool(self._legacy_ext))
        try:
            key, raw = self._get_batch_object(b_start)
            origin = self.store.describe(key)
            parts = split_batch(decompress(raw, origin=origin, sequence=b_start), origin=origin)
            check_content(key, batch, parts, origin)
        except LedgerError as exc:
            return [
                LedgerRecord(seq, exc.origin or self.store.describe(key), error=_for_ledger(exc, seq))
                for seq in range(b_start, b_end + 1)
            ]
        return [LedgerRecord(seq, origin, data=data) for seq, data in parts]

    def records(self, start: int, end: int | None) -> Iterator[LedgerRecord]:
        if end is not None:
            try:
                _ = self.config
            except SourceError as exc:
                yield from (LedgerRecord(s, exc.origin or "", error=_for_ledger(exc, s)) for s in range(start, end + 1))
                return
            batches = self.config.batches(start, end)
            for group in ordered_prefetch(batches, self.fetch_batch, workers=self.prefetch):
                yield from (r for r in group if start <= r.sequence <= end)
            return
        yield from self._follow(start)

    def _follow(self, start: int) -> Iterator[LedgerRecord]:
        """Wait for each next batch to appear; a batch missing while a later one exists is a hole,
        reported rather than waited for forever."""
        b_start = self.config.batch_range(start)[0]
        for _ in itertools.count():
            batch = self.config.batch_range(b_start)
            group = self.fetch_batch(batch)
            missing = all(isinstance(r.error, ObjectNotFound) for r in group)
            if missing and not self._exists_after(batch[1] + 1):
                time.sleep(self.poll_interval)
                continue
            yield from (r for r in group if r.sequence >= start)
            b_start = batch[1] + 1

    def _exists_after(self, sequence: int) -> bool:
        return any(
            self.store.exists(self.config.batch_key(sequence, legacy_extension=legacy)) for legacy in (False, True)
        )

    def close(self) -> None:
        return None


def check_content(key: str, batch: tuple[int, int], parts: list[tuple[int, bytes]], origin: str) -> None:
    """An object must hold exactly the ledgers its key names, once each and in order, by its batch
    header and by each ledger's own header. Otherwise a copied or misplaced object would pass off
    another object's ledgers as its own, and they would come out twice."""
    b_start, b_end = batch
    named = list(range(b_start, b_end + 1))
    batched = [seq for seq, _ in parts]
    held = [_held_sequence(seq, data, origin) for seq, data in parts]
    if batched == named and held == named:
        return
    outside = sorted({*batched, *held} - set(named))
    twice = sorted(seq for seq, n in Counter(held).items() if n > 1)
    missing = sorted(set(named) - set(held))
    if outside:
        why = f"holds ledger {_listed(outside)}, outside its range {b_start}-{b_end}"
    elif twice:
        why = f"holds ledger {_listed(twice)} twice"
    elif missing:
        why = f"lacks ledger {_listed(missing)} of its range {b_start}-{b_end}"
    else:
        why = "holds its ledgers out of order"
    raise ValidationError(f"object {key} {why}", origin=origin)


def _held_sequence(position: int, data: bytes, origin: str) -> int:
    """The sequence a LedgerCloseMeta's own header states; an unreadable one is left to its
    ledger's decode to report (the position the batch gives it stands)."""
    try:
        return peek_sequence(data, origin=origin)
    except DecodeError:
        return position


_LISTED = 5  # sequences named in an error before "and N more"


def _listed(sequences: list[int]) -> str:
    shown = ", ".join(map(str, sequences[:_LISTED]))
    return shown + (f" and {len(sequences) - _LISTED} more" if len(sequences) > _LISTED else "")


def _for_ledger(exc: LedgerError, sequence: int) -> LedgerError:
    """The same error, attributed to one ledger of the failed batch."""
    return type(exc)(exc.cause, sequence=sequence, origin=exc.origin)
