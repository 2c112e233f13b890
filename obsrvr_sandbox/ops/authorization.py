"""What an issuer can do to its holders' trustlines: allow trust and set trustline flags
(authorize, revoke), and claw back.

Revoking a trustline entirely (neither authorized nor authorized to maintain liabilities)
needs an issuer with AUTH_REVOCABLE. It removes the holder's offers in that asset and redeems
the holder's shares of every pool holding it (CAP-38): each pool asset the shares are worth
goes into a claimable balance for the holder, with id SHA-256(HashIDPreimage POOL_REVOKE_OP_ID:
transaction source and sequence number, operation index, pool, asset), sponsored by the holder
out of the reserve its pool-share trustline freed. An asset the holder itself issued needs no
balance: that part is burnt.
"""

from __future__ import annotations

from dataclasses import replace

from stellar_sdk import Asset
from stellar_sdk import xdr as X

from obsrvr_ray.ttp.revocation import pool_revoke_op_id
from obsrvr_sandbox.addresses import account_id_xdr
from obsrvr_sandbox.entries import (
    AUTH_REVOCABLE_FLAG,
    AUTHORIZED_FLAG,
    AUTHORIZED_TO_MAINTAIN_LIABILITIES_FLAG,
    TRUSTLINE_CLAWBACK_ENABLED_FLAG,
    ClaimableBalanceEntry,
    PoolShareEntry,
)
from obsrvr_sandbox.entry_xdr import asset_xdr
from obsrvr_sandbox.moves import Move
from obsrvr_sandbox.ops.balances import debit
from obsrvr_sandbox.ops.base import OpContext, OpOutcome, address, asset_from_xdr, inner_result, muxed_address
from obsrvr_sandbox.ops.claimable import add_sponsoring
from obsrvr_sandbox.ops.exchange import remove_offer
from obsrvr_sandbox.ops.trust import close_pool_share

_ANY_AUTH = AUTHORIZED_FLAG | AUTHORIZED_TO_MAINTAIN_LIABILITIES_FLAG
_ALLOW = X.AllowTrustResultCode
_SET = X.SetTrustLineFlagsResultCode
_CLAWBACK = X.ClawbackResultCode


def revoke_balance_id(ctx: OpContext, pool_id: bytes, asset: Asset) -> bytes:
    """The id the runtime's revocation rule derives for this balance (one definition, there)."""
    return pool_revoke_op_id(account_id_xdr(ctx.tx_source), X.SequenceNumber(X.Int64(ctx.tx_seq)), ctx.op_index,
                             pool_id, asset_xdr(asset))


def _redeem(ctx: OpContext, share: PoolShareEntry) -> list[Move]:
    txn = ctx.txn
    holder = share.account_id
    pool = txn.pool(share.pool_id)
    moves = []
    if share.balance:
        amounts = (
            share.balance * pool.reserve_a // pool.total_shares,
            share.balance * pool.reserve_b // pool.total_shares,
        )
        txn.put(
            replace(
                pool,
                reserve_a=pool.reserve_a - amounts[0],
                reserve_b=pool.reserve_b - amounts[1],
                total_shares=pool.total_shares - share.balance,
            )
        )
        balances = 0
        for asset, amount in zip((pool.asset_a, pool.asset_b), amounts, strict=True):
            if amount == 0:
                continue
            if asset.issuer == holder:
                moves.append(Move(asset, pool.address, holder, amount, False))
                continue
            line = None if asset.is_native() else txn.trustline(holder, asset)
            clawback = line is not None and bool(line.flags & TRUSTLINE_CLAWBACK_ENABLED_FLAG)
            entry = ClaimableBalanceEntry(
                revoke_balance_id(ctx, pool.pool_id, asset), (holder,), asset, amount, holder, clawback
            )
            txn.put(entry)
            balances += 1
            moves.append(Move(asset, pool.address, entry.address, amount, False))
        add_sponsoring(txn, holder, balances)
    close_pool_share(txn, txn.pool_share(holder, share.pool_id))
    return moves


def _deauthorize(ctx: OpContext, holder: str, asset: Asset) -> list[Move]:
    """Remove the holder's offers in `asset` and redeem its shares of pools holding it."""
    txn = ctx.txn
    for offer in txn.offers_of(holder):
        if asset in (offer.selling, offer.buying):
            remove_offer(txn, offer)
    moves = []
    for share in txn.pool_shares_of(holder):
        pool = txn.pool(share.pool_id)
        if asset in (pool.asset_a, pool.asset_b):
            moves.extend(_redeem(ctx, share))
    return moves


def _set_flags(ctx: OpContext, holder: str, asset: Asset, flags: int) -> tuple[str, list[Move]]:
    """Apply new trustline flags: a result suffix and the moves a revocation caused."""
    txn = ctx.txn
    line = txn.trustline(holder, asset)
    if line is None:
        return "NO_TRUST_LINE", []
    weaker = (line.flags & AUTHORIZED_FLAG and not flags & AUTHORIZED_FLAG) or (
        line.flags & _ANY_AUTH and not flags & _ANY_AUTH
    )
    if weaker and not txn.account(ctx.source).flags & AUTH_REVOCABLE_FLAG:
        return "CANT_REVOKE", []
    moves = _deauthorize(ctx, holder, asset) if line.flags & _ANY_AUTH and not flags & _ANY_AUTH else []
    txn.put(replace(txn.trustline(holder, asset), flags=flags))
    return "SUCCESS", moves


def set_trust_line_flags(ctx: OpContext, body: X.OperationBody) -> OpOutcome:
    op = body.set_trust_line_flags_op
    asset = asset_from_xdr(op.asset)
    clear, add = op.clear_flags.uint32, op.set_flags.uint32

    def outcome(suffix: str, moves: list[Move] | None = None) -> OpOutcome:
        result = X.SetTrustLineFlagsResult(_SET[f"SET_TRUST_LINE_FLAGS_{suffix}"])
        return OpOutcome(
            inner_result(X.OperationType.SET_TRUST_LINE_FLAGS, set_trust_line_flags_result=result),
            suffix == "SUCCESS",
            moves or [],
        )

    holder = address(op.trustor)
    if (
        asset.is_native()
        or asset.issuer != ctx.source
        or holder == ctx.source
        or clear & add
        or add & TRUSTLINE_CLAWBACK_ENABLED_FLAG
        or add & _ANY_AUTH == _ANY_AUTH
    ):
        return outcome("MALFORMED")
    line = ctx.txn.trustline(holder, asset)
    flags = (line.flags & ~clear) | add if line is not None else 0
    return outcome(*_set_flags(ctx, holder, asset, flags))


def allow_trust(ctx: OpContext, body: X.OperationBody) -> OpOutcome:
    op = body.allow_trust_op
    code = op.asset.asset_code4.asset_code4 if op.asset.asset_code4 else op.asset.asset_code12.asset_code12
    asset = Asset(code.rstrip(b"\0").decode(), ctx.source)
    authorize = op.authorize.uint32

    def outcome(suffix: str, moves: list[Move] | None = None) -> OpOutcome:
        result = X.AllowTrustResult(_ALLOW[f"ALLOW_TRUST_{suffix}"])
        return OpOutcome(
            inner_result(X.OperationType.ALLOW_TRUST, allow_trust_result=result), suffix == "SUCCESS", moves or []
        )

    holder = address(op.trustor)
    if holder == ctx.source:
        return outcome("SELF_NOT_ALLOWED")
    if authorize & ~_ANY_AUTH or authorize == _ANY_AUTH:
        return outcome("MALFORMED")
    line = ctx.txn.trustline(holder, asset)
    flags = (line.flags & TRUSTLINE_CLAWBACK_ENABLED_FLAG) | authorize if line is not None else 0
    return outcome(*_set_flags(ctx, holder, asset, flags))


def clawback(ctx: OpContext, body: X.OperationBody) -> OpOutcome:
    op = body.clawback_op
    asset = asset_from_xdr(op.asset)
    holder = muxed_address(op.from_)[0]
    amount = op.amount.int64

    def outcome(code: X.ClawbackResultCode, moves: list[Move] | None = None) -> OpOutcome:
        return OpOutcome(
            inner_result(X.OperationType.CLAWBACK, clawback_result=X.ClawbackResult(code)),
            code == _CLAWBACK.CLAWBACK_SUCCESS,
            moves or [],
        )

    if amount <= 0 or asset.is_native() or asset.issuer != ctx.source or holder == ctx.source:
        return outcome(_CLAWBACK.CLAWBACK_MALFORMED)
    line = ctx.txn.trustline(holder, asset)
    if line is None:
        return outcome(_CLAWBACK.CLAWBACK_NO_TRUST)
    if not line.flags & TRUSTLINE_CLAWBACK_ENABLED_FLAG:
        return outcome(_CLAWBACK.CLAWBACK_NOT_CLAWBACK_ENABLED)
    if debit(ctx.txn, holder, asset, amount, ctx.ledger.base_reserve, authorized_only=False) is not None:
        return outcome(_CLAWBACK.CLAWBACK_UNDERFUNDED)
    return outcome(_CLAWBACK.CLAWBACK_SUCCESS, [Move(asset, holder, ctx.source, amount, clawback=True)])
