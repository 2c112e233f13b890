"""Change trust: open, re-limit or close a trustline to an issued asset or to a liquidity
pool's shares.

A trustline is a sub-entry of its account and raises its minimum balance by one base reserve;
a pool-share trustline counts twice. A new trustline is authorized unless the issuer requires
authorization, and clawback-enabled when the issuer is. Pool shares need trustlines to both
pool assets (the issuer of one needs none for it); each such trustline counts its pool uses and
cannot be closed while it has any. The first pool-share trustline creates the pool, the last
one to close removes it.
"""

from __future__ import annotations

from dataclasses import replace

from stellar_sdk import Asset
from stellar_sdk import xdr as X

from obsrvr_sandbox.entries import (
    AUTH_CLAWBACK_ENABLED_FLAG,
    AUTHORIZED_FLAG,
    POOL_FEE_BPS,
    TRUSTLINE_CLAWBACK_ENABLED_FLAG,
    PoolEntry,
    PoolShareEntry,
    TrustlineEntry,
)
from obsrvr_sandbox.ops.balances import min_balance
from obsrvr_sandbox.ops.base import OpContext, OpOutcome, asset_from_xdr, inner_result
from obsrvr_sandbox.ops.exchange import pool_of
from obsrvr_sandbox.state import EntryTxn

_CODES = X.ChangeTrustResultCode
AUTH_REQUIRED_FLAG = 1


def _outcome(code: X.ChangeTrustResultCode) -> OpOutcome:
    result = inner_result(X.OperationType.CHANGE_TRUST, change_trust_result=X.ChangeTrustResult(code))
    return OpOutcome(result, code == _CODES.CHANGE_TRUST_SUCCESS)


def _has_reserve(ctx: OpContext, sub_entries: int) -> bool:
    account = ctx.txn.account(ctx.source)
    needed = min_balance(account, ctx.ledger.base_reserve, extra_sub_entries=sub_entries)
    return account.balance - account.selling_liabilities >= needed


def _add_sub_entries(txn: EntryTxn, account_id: str, count: int) -> None:
    account = txn.account(account_id)
    txn.put(replace(account, num_sub_entries=account.num_sub_entries + count))


def change_trust(ctx: OpContext, body: X.OperationBody) -> OpOutcome:
    op = body.change_trust_op
    if op.line.type == X.AssetType.ASSET_TYPE_POOL_SHARE:
        return _change_pool_trust(ctx, op.line.liquidity_pool.constant_product, op.limit.int64)
    return _change_asset_trust(ctx, asset_from_xdr(op.line), op.limit.int64)


def _change_asset_trust(ctx: OpContext, asset: Asset, limit: int) -> OpOutcome:
    txn = ctx.txn
    if asset.is_native() or limit < 0:
        return _outcome(_CODES.CHANGE_TRUST_MALFORMED)
    if asset.issuer == ctx.source:
        return _outcome(_CODES.CHANGE_TRUST_SELF_NOT_ALLOWED)
    line = txn.trustline(ctx.source, asset)
    if line is not None:
        if limit < line.balance + line.buying_liabilities:
            return _outcome(_CODES.CHANGE_TRUST_INVALID_LIMIT)
        if limit == 0:
            if line.pool_use_count:
                return _outcome(_CODES.CHANGE_TRUST_CANNOT_DELETE)
            txn.remove(line.key)
            _add_sub_entries(txn, ctx.source, -1)
        else:
            txn.put(replace(line, limit=limit))
        return _outcome(_CODES.CHANGE_TRUST_SUCCESS)
    if limit == 0:
        return _outcome(_CODES.CHANGE_TRUST_INVALID_LIMIT)
    issuer = txn.account(asset.issuer)
    if issuer is None:
        return _outcome(_CODES.CHANGE_TRUST_NO_ISSUER)
    if not _has_reserve(ctx, 1):
        return _outcome(_CODES.CHANGE_TRUST_LOW_RESERVE)
    flags = 0 if issuer.flags & AUTH_REQUIRED_FLAG else AUTHORIZED_FLAG
    if issuer.flags & AUTH_CLAWBACK_ENABLED_FLAG:
        flags |= TRUSTLINE_CLAWBACK_ENABLED_FLAG
    txn.put(TrustlineEntry(ctx.source, asset, balance=0, limit=limit, flags=flags))
    _add_sub_entries(txn, ctx.source, 1)
    return _outcome(_CODES.CHANGE_TRUST_SUCCESS)


def _count_pool_use(txn: EntryTxn, account_id: str, pool: PoolEntry, step: int) -> None:
    for asset in (pool.asset_a, pool.asset_b):
        if not asset.is_native() and asset.issuer != account_id:
            line = txn.trustline(account_id, asset)
            txn.put(replace(line, pool_use_count=line.pool_use_count + step))


def close_pool_share(txn: EntryTxn, share: PoolShareEntry) -> None:
    """Remove an (empty) pool-share trustline; the pool goes with its last one."""
    pool = txn.pool(share.pool_id)
    txn.remove(share.key)
    _add_sub_entries(txn, share.account_id, -2)
    _count_pool_use(txn, share.account_id, pool, -1)
    if pool.share_trustlines == 1:
        txn.remove(pool.key)
    else:
        txn.put(replace(pool, share_trustlines=pool.share_trustlines - 1))


def _change_pool_trust(ctx: OpContext, params: X.LiquidityPoolConstantProductParameters, limit: int) -> OpOutcome:
    txn = ctx.txn
    asset_a, asset_b = asset_from_xdr(params.asset_a), asset_from_xdr(params.asset_b)
    pool_id, first, _ = pool_of(asset_a, asset_b)
    if params.fee.int32 != POOL_FEE_BPS or asset_a == asset_b or first != asset_a or limit < 0:
        return _outcome(_CODES.CHANGE_TRUST_MALFORMED)
    share = txn.pool_share(ctx.source, pool_id)
    if share is not None:
        if limit < share.balance:
            return _outcome(_CODES.CHANGE_TRUST_INVALID_LIMIT)
        if limit == 0:
            close_pool_share(txn, share)
        else:
            txn.put(replace(share, limit=limit))
        return _outcome(_CODES.CHANGE_TRUST_SUCCESS)
    if limit == 0:
        return _outcome(_CODES.CHANGE_TRUST_INVALID_LIMIT)
    for asset in (asset_a, asset_b):
        if asset.is_native() or asset.issuer == ctx.source:
            continue
        line = txn.trustline(ctx.source, asset)
        if line is None:
            return _outcome(_CODES.CHANGE_TRUST_TRUST_LINE_MISSING)
        if not line.flags & AUTHORIZED_FLAG:
            return _outcome(_CODES.CHANGE_TRUST_NOT_AUTH_MAINTAIN_LIABILITIES)
    if not _has_reserve(ctx, 2):
        return _outcome(_CODES.CHANGE_TRUST_LOW_RESERVE)
    pool = txn.pool(pool_id) or PoolEntry(pool_id, asset_a, asset_b)
    pool = txn.put(replace(pool, share_trustlines=pool.share_trustlines + 1))
    txn.put(PoolShareEntry(ctx.source, pool_id, balance=0, limit=limit))
    _add_sub_entries(txn, ctx.source, 2)
    _count_pool_use(txn, ctx.source, pool, 1)
    return _outcome(_CODES.CHANGE_TRUST_SUCCESS)
