"""The header hash chain: each ledger's previousLedgerHash is the hash of the ledger before it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from obsrvr_ray.errors import ValidationError
from obsrvr_ray.ledger.model import Ledger


@dataclass(frozen=True)
class ChainBreak:
    previous: int
    current: int
    expected: bytes  # hash of the previous ledger's header
    recorded: bytes  # previousLedgerHash recorded in the current ledger

    def describe(self) -> str:
        if self.current != self.previous + 1:
            order = f"ledger {self.current} follows ledger {self.previous} (not consecutive)"
        else:
            order = f"ledger {self.current} does not follow ledger {self.previous}"
        return (
            f"hash chain broken between ledger {self.previous} and ledger {self.current}: {order}; "
            f"its previousLedgerHash is {self.recorded.hex()[:16]}…, "
            f"the hash of ledger {self.previous} is {self.expected.hex()[:16]}…"
        )


def link_break(previous: Ledger, current: Ledger) -> ChainBreak | None:
    if current.sequence == previous.sequence + 1 and current.previous_hash == previous.hash:
        return None
    return ChainBreak(previous.sequence, current.sequence, previous.hash, current.previous_hash)


def chain_breaks(ledgers: Iterable[Ledger]) -> list[ChainBreak]:
    """Every broken link in a list of ledgers taken in the order given."""
    breaks = []
    previous = None
    for ledger in ledgers:
        if previous is not None and (found := link_break(previous, ledger)) is not None:
            breaks.append(found)
        previous = ledger
    return breaks


Link = tuple[int, bytes]  # a good ledger's sequence and header hash: what the next ledger must link to


class Chained(Protocol):
    """What the chain reads of a ledger: a decoded Ledger, or the header facts of one read
    straight from its bytes (ttp.transfer_table.LedgerTransfers)."""

    @property
    def sequence(self) -> int: ...

    @property
    def hash(self) -> bytes: ...

    @property
    def previous_hash(self) -> bytes: ...

    @property
    def origin(self) -> str: ...


class ChainChecker:
    """The hash chain of a stream of ledgers: each ledger is checked into the last good ledger.

    A ledger that does not link never becomes the link. The ledgers after it cannot link to the
    last good one either, so they fail with it ("chain broken at N") until one links again:
    nothing past a break is kept (the live follower holds there and polls; a backfill chunk or an
    export fails the rest of its range, and a retry reads those ledgers again). A ledger that
    failed for another reason (unreadable, missing) is a gap: the ledger after it has nothing to
    be checked against and starts the chain again, and the gap is reported where it happened.
    `link`: the last good ledger before the stream, when known (the dataset's last ledger)."""

    def __init__(self, link: Link | None = None) -> None:
        self._link = link
        self._broken: ChainBreak | None = None  # the first break, while nothing has linked since

    def link_break(self, ledger: Chained) -> ChainBreak | None:
        """The break `ledger` makes with the last good ledger, if any; the chain does not move."""
        if self._link is None:
            return None
        sequence, hash_ = self._link
        if ledger.sequence != sequence + 1 and self._broken is None:
            return None  # a gap: nothing to check against
        if ledger.sequence == sequence + 1 and ledger.previous_hash == hash_:
            return None
        return ChainBreak(sequence, ledger.sequence, hash_, ledger.previous_hash)

    def accept(self, ledger: Chained) -> None:
        """`ledger` linked (or starts the chain): the next one links to it."""
        self._link, self._broken = (ledger.sequence, ledger.hash), None

    def forget(self) -> None:
        """A ledger without a readable header: the next one has nothing to link to."""
        self._link, self._broken = None, None

    def check(self, ledger: Chained) -> None:
        """Accept `ledger`, or raise the ValidationError naming the break that stops it."""
        found = self.link_break(ledger)
        if found is None:
            self.accept(ledger)
            return
        if self._broken is None:
            self._broken = found
            cause = found.describe()
        else:
            cause = (f"ledger {ledger.sequence} comes after the break, and nothing is kept past it until a ledger "
                     f"{self._broken.current} links to ledger {self._broken.previous}")
        raise ValidationError(f"chain broken at {self._broken.current}: {cause}", sequence=ledger.sequence,
                              origin=ledger.origin)
