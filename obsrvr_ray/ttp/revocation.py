"""Trustline revocation (allow trust / set trustline flags) of an account that holds pool shares:
the shares are redeemed and each asset goes into a claimable balance whose id is derived from
the revoking transaction (CAP-38). When the trustor is the issuer of one asset, that side has no
claimable balance: it is burnt."""

from __future__ import annotations

import hashlib

from stellar_sdk import xdr as X

from obsrvr_ray.ledger import envelope as E
from obsrvr_ray.ttp.assets import Asset, from_xdr
from obsrvr_ray.ttp.classic import movement
from obsrvr_ray.ttp.context import TxContext
from obsrvr_ray.ttp.events import BURN, Event, TransferError
from obsrvr_ray.ttp.ledger_entries import balance_id_strkey, created_claimable_balances, pool_deltas


def revoke_balance_id(ctx: TxContext, op_index: int, pool_id: bytes, asset: Asset) -> bytes:
    """The id of the claimable balance operation `op_index` (1-based) of this transaction created
    for `asset` of the pool: the rule recognises the balances it created by it."""
    tx = E.inner_transaction(ctx.tx.envelope)
    source = E.source_account(ctx.tx.envelope)
    key = source.med25519.ed25519 if source.type == X.CryptoKeyType.KEY_TYPE_MUXED_ED25519 else source.ed25519
    return pool_revoke_op_id(X.AccountID(X.PublicKey(X.PublicKeyType.PUBLIC_KEY_TYPE_ED25519, key)), tx.seq_num,
                             op_index - 1, pool_id, asset.to_xdr())


def pool_revoke_op_id(source: X.AccountID, seq_num: X.SequenceNumber, op_number: int, pool_id: bytes,
                      asset: X.Asset) -> bytes:
    """Hash of the POOL_REVOKE_OP_ID preimage: transaction source and sequence, the 0-based
    operation number, the pool and the asset. Written once, for the rule here and for the
    sandbox, which creates these balances when it revokes a trustline."""
    preimage = X.HashIDPreimage(
        X.EnvelopeType.ENVELOPE_TYPE_POOL_REVOKE_OP_ID,
        revoke_id=X.HashIDPreimageRevokeID(source, seq_num, X.Uint32(op_number), X.PoolID(X.Hash(pool_id)), asset),
    )
    return hashlib.sha256(preimage.to_xdr_bytes()).digest()


def revoke(ctx: TxContext, _op: X.Operation, op_index: int, _result: X.OperationResultTr) -> list[Event]:
    changes = ctx.op_changes(op_index - 1)
    pools = pool_deltas(changes)
    created = created_claimable_balances(changes)
    if not pools or not created:
        return []
    events: list[Event] = []
    for pool in pools:
        sides = [(pool.asset_a, pool.delta_a), (pool.asset_b, pool.delta_b)]
        matched = []
        for asset, delta in sides:
            balance_hash = revoke_balance_id(ctx, op_index, pool.pool_id, asset)
            if balance_hash in created:
                matched.append((asset, delta, created[balance_hash]))
        if len(matched) > 2:
            raise TransferError(f"more than two claimable balances for pool {pool.address}")
        for _asset, _delta, entry in matched:
            events.append(movement(ctx, from_xdr(entry.asset), pool.address, balance_id_strkey(entry.balance_id),
                                   entry.amount.int64, op_index, with_muxed=False))
        if len(matched) == 1:
            other_asset, other_delta = next((a, d) for a, d in sides if a != matched[0][0])
            events.append(Event(BURN, amount=abs(other_delta), asset=other_asset, contract_id=ctx.sac(other_asset),
                                from_=pool.address, **ctx.common(op_index)))
    return events
