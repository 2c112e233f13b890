"""The header hash chain: each ledger's previousLedgerHash is the hash of the ledger before it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

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


class ChainChecker:
    """Checks links as ledgers of a range stream by; a gap (a ledger that failed or is missing)
    is reported where it happened, so only consecutive neighbours are compared here."""

    def __init__(self) -> None:
        self._last: Ledger | None = None

    def check(self, ledger: Ledger) -> None:
        previous, self._last = self._last, ledger
        if previous is None or ledger.sequence != previous.sequence + 1:
            return
        found = link_break(previous, ledger)
        if found is not None:
            raise ValidationError(found.describe(), sequence=ledger.sequence, origin=ledger.origin)
