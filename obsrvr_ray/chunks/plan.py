"""Cut the ledgers still to do into chunks: the unit that is read, written and committed whole.

Chunk boundaries sit on a fixed grid (`ranges.Grid`: multiples of the chunk size in whole
objects of the source, cut again at its partition boundaries), never on where a run happened to
start or stop. So a rerun after a crash cuts the remaining ledgers exactly as the first run would
have, and its files carry the same names as an uninterrupted run's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from obsrvr_ray.ranges import Grid, Range, contains, normalize, range_key, runs, size, subtract


@dataclass(frozen=True)
class Segment:
    """Consecutive ledgers to process. `link`: the ledger before `start` belongs to the job or is
    already in the output (an earlier run's, the live follower's), so the first ledger's
    previousLedgerHash is checked against it (the hash chain across chunks and across runs)."""

    start: int
    end: int
    link: bool


@dataclass(frozen=True)
class WorkUnit:
    chunk: Range
    generation: int  # 0 for the first commit of a chunk, n for its n-th --retry-failed
    segments: tuple[Segment, ...]

    @property
    def chunk_id(self) -> str:
        return range_key(self.chunk)

    @property
    def ledgers(self) -> int:
        return size((s.start, s.end) for s in self.segments)


class Plan:
    """The units of a run, in order, made one at a time as they are taken: a plan holds ranges,
    never a unit per chunk, so its memory does not grow with the ledgers it covers."""

    def __init__(self, todo: tuple[Range, ...], units: Callable[[], Iterator[WorkUnit]], count: int) -> None:
        self.todo = todo  # the ledgers the units read, normalized
        self._units = units
        self.count = count

    def __iter__(self) -> Iterator[WorkUnit]:
        return self._units()

    def __len__(self) -> int:
        return self.count

    @property
    def ledgers(self) -> int:
        return size(self.todo)


def plan(requested: tuple[Range, ...], committed: Iterable[Range], grid: Grid) -> Plan:
    """Units for every requested ledger that no committed chunk holds."""
    held = normalize(committed)
    todo = subtract(requested, held)

    def units() -> Iterator[WorkUnit]:
        for cell in grid.cells(todo):
            yield WorkUnit(cell, 0, (Segment(cell[0], cell[1], linked(cell[0], requested, held)),))

    return Plan(todo, units, grid.count(todo))


def linked(start: int, requested: tuple[Range, ...], held: tuple[Range, ...]) -> bool:
    """Whether ledgers from `start` are checked into the ledger before it: the job asks for that
    ledger, or the output holds it (a run that extends the output links to what it holds)."""
    return contains(requested, start - 1) or contains(held, start - 1)


def plan_retries(requested: tuple[Range, ...], failed: dict[Range, tuple[int, list[int]]],
                 held: tuple[Range, ...] = ()) -> Plan:
    """One unit per chunk with failed ledgers ({chunk: (latest generation, failed sequences)}):
    only those ledgers are read again, as the chunk's next generation. `held`: the output's
    committed chunks (normalized). (A unit per failed chunk is held: their number is bounded by
    what the failures table already holds.)"""
    units = []
    for chunk, (generation, sequences) in sorted(failed.items()):
        segments = tuple(Segment(a, b, linked(a, requested, held)) for a, b in runs(sequences))
        if segments:
            units.append(WorkUnit(chunk, generation + 1, segments))
    todo = normalize((s.start, s.end) for u in units for s in u.segments)
    return Plan(todo, lambda: iter(units), len(units))


class Watermark:
    """The highest ledger up to which every planned ledger is committed (chunks finish out of order)."""

    def __init__(self, todo: tuple[Range, ...]) -> None:
        self.todo = todo
        self.last = self.todo[-1][1] if self.todo else 0

    def add(self, chunk: Range) -> int:
        self.todo = subtract(self.todo, [chunk])
        return self.todo[0][0] - 1 if self.todo else self.last
