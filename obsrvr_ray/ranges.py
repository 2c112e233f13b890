"""Sets of ledger sequences as sorted, disjoint, inclusive ranges: parse them from the command
line, take away what is already done, test membership.

A backfill asks for any set of ledgers (a range, or several for a sparse lake) and must know
exactly which of them are still to do, so set arithmetic on ranges is kept in one place.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from obsrvr_ray.errors import ConfigError

Range = tuple[int, int]  # first and last ledger, inclusive

FIRST_LEDGER, LAST_LEDGER = 1, 0xFFFFFFFF  # ledger sequences are 32-bit unsigned; the genesis ledger is 1


def ledger_number(name: str, raw: object) -> int:
    """A ledger sequence given under `name` (a flag or a settings key). Every command checks its
    ledgers here, so they accept and refuse the same input with the same one-line message, and a
    sequence no ledger can have is refused before anything is planned or read."""
    try:
        return ledger_sequence(raw)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def ledger_sequence(raw: object) -> int:
    """A ledger sequence; the error tells the problem, for the caller (or a settings model) to
    name the setting."""
    try:
        value = int(raw) if isinstance(raw, int | str) and not isinstance(raw, bool) else None
    except ValueError:
        value = None
    if value is None or not FIRST_LEDGER <= value <= LAST_LEDGER:
        raise ConfigError(f"expected a ledger sequence from {FIRST_LEDGER} to {LAST_LEDGER} (a 32-bit number), "
                          f"got {raw!r}")
    return value


def check_range(start: int, end: int, *, start_name: str = "--start", end_name: str = "--end") -> None:
    """Both ends are ledger sequences and the range is not empty."""
    ledger_number(start_name, start)
    ledger_number(end_name, end)
    if end < start:
        raise ConfigError(f"{end_name} {end} is before {start_name} {start}")


def check_within(ranges: tuple[Range, ...], latest: int | None, source: str, *, name: str = "--end",
                 hint: str = "--wait-for-end") -> None:
    """Refuse a range reaching past the newest ledger the source holds (`latest`, None when it
    holds none): such ledgers would only fail one by one, or be waited for without end."""
    if not ranges:
        return
    last = ranges[-1][1]
    if latest is None:
        raise ConfigError(f"{name} {last}: {source} holds no ledgers (give {hint} to wait for them)")
    if last > latest:
        raise ConfigError(f"{name} {last} is beyond the newest ledger of {source}, {latest} "
                          f"(give {hint} to wait for ledgers not closed yet)")


def range_key(r: Range) -> str:
    """Fixed-width, so keys sort as their ranges do: (63092928, 63092991) -> '0063092928-0063092991'."""
    return f"{r[0]:010d}-{r[1]:010d}"


def parse_range_key(text: str) -> Range:
    first, _, last = text.partition("-")
    return int(first), int(last)


def normalize(ranges: Iterable[Range]) -> tuple[Range, ...]:
    """Sorted, with overlapping and adjacent ranges merged."""
    out: list[Range] = []
    for start, end in sorted(ranges):
        if end < start:
            raise ConfigError(f"ledger range {start}-{end} ends before it starts")
        if out and start <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return tuple(out)


def parse_ranges(text: str) -> tuple[Range, ...]:
    """'63092982-63093001,6154623' -> ((6154623, 6154623), (63092982, 63093001))."""
    ranges = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        first, sep, last = part.partition("-")
        try:
            start = int(first)
            end = int(last) if sep else start
        except ValueError as exc:
            raise ConfigError(f"ledger range {part!r}: expected N or N-M with ledger numbers") from exc
        if not (FIRST_LEDGER <= start <= LAST_LEDGER and FIRST_LEDGER <= end <= LAST_LEDGER):
            raise ConfigError(f"ledger range {part!r}: ledger sequences are {FIRST_LEDGER} to {LAST_LEDGER}")
        ranges.append((start, end))
    if not ranges:
        raise ConfigError(f"no ledger range in {text!r}")
    return normalize(ranges)


def format_ranges(ranges: Iterable[Range]) -> str:
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def size(ranges: Iterable[Range]) -> int:
    return sum(b - a + 1 for a, b in ranges)


def subtract(ranges: Iterable[Range], taken: Iterable[Range]) -> tuple[Range, ...]:
    """The ledgers of `ranges` that are in no range of `taken`."""
    out = []
    remove = normalize(taken)
    for start, end in normalize(ranges):
        cursor = start
        first = bisect.bisect_left(remove, (start, start)) - 1
        for t_start, t_end in remove[max(first, 0):]:
            if t_start > end:
                break
            if t_end < cursor:
                continue
            if t_start > cursor:
                out.append((cursor, t_start - 1))
            cursor = max(cursor, t_end + 1)
        if cursor <= end:
            out.append((cursor, end))
    return tuple(out)


def overlaps(ranges: Iterable[Range], r: Range) -> bool:
    return subtract((r,), ranges) != (r,)


def contains(ranges: tuple[Range, ...], sequence: int) -> bool:
    """Membership in normalized ranges."""
    i = bisect.bisect_right(ranges, (sequence, float("inf"))) - 1
    return i >= 0 and ranges[i][0] <= sequence <= ranges[i][1]


def runs(sequences: Iterable[int]) -> tuple[Range, ...]:
    """Consecutive sequences grouped into ranges."""
    return normalize((s, s) for s in set(sequences))


@dataclass(frozen=True)
class Grid:
    """Fixed cells over the ledger sequences: `size` ledgers from each multiple of it, cut again
    at each multiple of `partition`. A source declares the grid of its objects (a galexie lake:
    its batch files, within its partitions; one ledger each for the others); a plan's chunks are
    whole cells of that grid (`chunks`), so each chunk is read from its own objects and no object
    is fetched by two chunks. Cells never depend on where a run starts or stops."""

    size: int  # ledgers per cell
    partition: int | None = None  # cells never cross a multiple of this

    @classmethod
    def aligned(cls, batch_size: int, ledgers_per_batch: int = 1, ledgers_per_partition: int | None = None) -> Grid:
        """Round the chunk size up to whole lake batches, so no batch object is read twice."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be a positive number of ledgers, got {batch_size}")
        batches = -(-batch_size // ledgers_per_batch)
        return cls(batches * ledgers_per_batch, ledgers_per_partition)

    def chunks(self, chunk_size: int) -> Grid:
        """The grid of chunks of about `chunk_size` ledgers over this one: rounded up to whole
        cells, never crossing its partitions."""
        return Grid.aligned(chunk_size, self.size, self.partition)

    def cells(self, ranges: Iterable[Range]) -> Iterator[Range]:
        for start, end in ranges:
            cursor = start
            while cursor <= end:
                last = (cursor // self.size + 1) * self.size - 1
                if self.partition:
                    last = min(last, (cursor // self.partition + 1) * self.partition - 1)
                last = min(last, end)
                yield cursor, last
                cursor = last + 1

    def count(self, ranges: Iterable[Range]) -> int:
        """How many cells `cells` yields, counted without making them: one per range, plus one
        per grid line (a multiple of the size or of the partition) a range crosses."""
        def lines(step: int, start: int, end: int) -> int:  # multiples of step in (start, end]
            return end // step - start // step

        total = 0
        for start, end in ranges:
            total += 1 + lines(self.size, start, end)
            if self.partition:
                total += lines(self.partition, start, end) - lines(math.lcm(self.size, self.partition), start, end)
        return total
