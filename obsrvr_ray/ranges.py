"""Sets of ledger sequences as sorted, disjoint, inclusive ranges: parse them from the command
line, take away what is already done, test membership.

A backfill asks for any set of ledgers (a range, or several for a sparse lake) and must know
exactly which of them are still to do, so set arithmetic on ranges is kept in one place.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from obsrvr_ray.errors import ConfigError

Range = tuple[int, int]  # first and last ledger, inclusive


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
        if start < 1:
            raise ConfigError(f"ledger range {part!r}: ledger numbers start at 1")
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
