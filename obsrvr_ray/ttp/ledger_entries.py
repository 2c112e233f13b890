"""Reading balances out of ledger-entry changes: claimable balances and liquidity pools."""

from __future__ import annotations

from dataclasses import dataclass

from stellar_sdk import xdr as X

from obsrvr_ray import strkey
from obsrvr_ray.ledger.meta import paired_changes
from obsrvr_ray.ttp.assets import Asset, from_xdr
from obsrvr_ray.ttp.events import TransferError


def balance_id_strkey(balance_id: X.ClaimableBalanceID) -> str:
    return strkey.claimable_balance(balance_id.v0.hash)


def removed_claimable_balance(changes: list[X.LedgerEntryChange]) -> X.ClaimableBalanceEntry:
    """The one claimable balance an operation removed (a claim or a clawback)."""
    found = [pre.data.claimable_balance for pre, post in paired_changes(changes)
             if post is None and pre is not None and pre.data.type == X.LedgerEntryType.CLAIMABLE_BALANCE]
    if len(found) != 1:
        raise TransferError(f"expected one removed claimable balance, found {len(found)}")
    return found[0]


def created_claimable_balances(changes: list[X.LedgerEntryChange]) -> dict[bytes, X.ClaimableBalanceEntry]:
    return {post.data.claimable_balance.balance_id.v0.hash: post.data.claimable_balance
            for pre, post in paired_changes(changes)
            if pre is None and post is not None and post.data.type == X.LedgerEntryType.CLAIMABLE_BALANCE}


@dataclass(frozen=True)
class PoolDelta:
    pool_id: bytes
    asset_a: Asset
    asset_b: Asset
    delta_a: int  # post - pre reserve
    delta_b: int

    @property
    def address(self) -> str:
        return strkey.liquidity_pool(self.pool_id)


def _reserves(entry: X.LedgerEntry | None) -> tuple[int, int]:
    if entry is None:
        return 0, 0
    cp = entry.data.liquidity_pool.body.constant_product
    return cp.reserve_a.int64, cp.reserve_b.int64


def pool_deltas(changes: list[X.LedgerEntryChange]) -> list[PoolDelta]:
    out = []
    for pre, post in paired_changes(changes):
        entry = post or pre
        if entry is None or entry.data.type != X.LedgerEntryType.LIQUIDITY_POOL:
            continue
        pool = entry.data.liquidity_pool
        params = pool.body.constant_product.params
        (pre_a, pre_b), (post_a, post_b) = _reserves(pre), _reserves(post)
        out.append(PoolDelta(pool.liquidity_pool_id.pool_id.hash, from_xdr(params.asset_a), from_xdr(params.asset_b),
                             post_a - pre_a, post_b - pre_b))
    return out


def single_pool_delta(changes: list[X.LedgerEntryChange]) -> PoolDelta:
    deltas = pool_deltas(changes)
    if len(deltas) != 1:
        raise TransferError(f"expected one liquidity pool change, found {len(deltas)}")
    return deltas[0]
