"""The token-transfer event: one movement of value, with where in the ledger it happened."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from obsrvr_ray.ttp.assets import Asset

TRANSFER, MINT, BURN, CLAWBACK, FEE = "transfer", "mint", "burn", "clawback", "fee"
KINDS = (TRANSFER, MINT, BURN, CLAWBACK, FEE)


@dataclass(frozen=True, slots=True)
class MuxedInfo:
    """Who inside a shared account received value: a muxed id, or the memo text or hash."""

    id: int | None = None
    text: str | None = None
    hash: bytes | None = None


class Event(NamedTuple):
    """A tuple, because a ledger has thousands of them and tuples are the cheapest to build."""

    kind: str
    amount: int  # stroops or the token's base unit; full int64 / i128 range; negative only for fee refunds
    asset: Asset | None  # None: a custom SEP-41 token, named by its contract
    contract_id: str  # C strkey of the token contract (the SAC for classic assets)
    tx_index: int  # 1-based apply order
    tx_hash: str
    op_index: int | None = None  # 1-based; None for fee events
    from_: str | None = None
    to: str | None = None
    to_muxed: MuxedInfo | None = None


class MalformedEvent(ValueError):
    """A contract event that does not follow SEP-41 (skipped with its reason, never fatal)."""


class TransferError(ValueError):
    """The ledger data contradicts a token-transfer rule (e.g. a claim with no removed balance)."""
