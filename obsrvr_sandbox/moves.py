"""A movement of value, the unit both operations and CAP-67 events deal in."""

from __future__ import annotations

from dataclasses import dataclass

from stellar_sdk import Asset


@dataclass(frozen=True, slots=True)
class Move:
    """One movement of an asset between two holders (G, L, B or C strkeys), as CAP-67 events
    report it: the issuer sending is a mint, the issuer receiving a burn, and a clawback names
    the holder it takes from (the receiver is then the issuer)."""

    asset: Asset
    sender: str
    receiver: str
    amount: int
    # The movement lands at the operation's destination, so that destination's muxed id (or
    # the transaction memo) identifies the recipient; False for legs such as offer trades.
    to_destination: bool = True
    receiver_muxed_id: int | None = None
    clawback: bool = False
