"""Uniform access to transaction envelopes of every kind (v0, v1, fee bump).

For a fee bump, the transaction fields (source, sequence, operations, memo, conditions) are
those of the inner transaction; the fee payer and outer fee are separate accessors.
"""

from __future__ import annotations

from stellar_sdk import xdr as X

_V0 = X.EnvelopeType.ENVELOPE_TYPE_TX_V0
_V1 = X.EnvelopeType.ENVELOPE_TYPE_TX
_FEE_BUMP = X.EnvelopeType.ENVELOPE_TYPE_TX_FEE_BUMP


def is_fee_bump(env: X.TransactionEnvelope) -> bool:
    return env.type == _FEE_BUMP


def inner_transaction(env: X.TransactionEnvelope) -> X.Transaction | X.TransactionV0:
    if env.type == _V1:
        return env.v1.tx
    if env.type == _V0:
        return env.v0.tx
    return env.fee_bump.tx.inner_tx.v1.tx


def source_account(env: X.TransactionEnvelope) -> X.MuxedAccount:
    """The (inner) transaction's source as a MuxedAccount (v0 sources are plain ed25519 keys)."""
    tx = inner_transaction(env)
    if env.type == _V0:
        return X.MuxedAccount(X.CryptoKeyType.KEY_TYPE_ED25519, ed25519=tx.source_account_ed25519)
    return tx.source_account


def fee_source(env: X.TransactionEnvelope) -> X.MuxedAccount:
    """Who pays the fee: the fee-bump source, else the transaction source."""
    if env.type == _FEE_BUMP:
        return env.fee_bump.tx.fee_source
    return source_account(env)


def operations(env: X.TransactionEnvelope) -> list[X.Operation]:
    return inner_transaction(env).operations


def signatures(env: X.TransactionEnvelope) -> list[X.DecoratedSignature]:
    """The envelope's own signatures (the outer ones for a fee bump)."""
    if env.type == _V1:
        return env.v1.signatures
    if env.type == _V0:
        return env.v0.signatures
    return env.fee_bump.signatures


def inner_fee(env: X.TransactionEnvelope) -> int:
    return inner_transaction(env).fee.uint32


def fee_bump_fee(env: X.TransactionEnvelope) -> int | None:
    return env.fee_bump.tx.fee.int64 if env.type == _FEE_BUMP else None


def time_bounds(env: X.TransactionEnvelope) -> X.TimeBounds | None:
    tx = inner_transaction(env)
    if env.type == _V0:
        return tx.time_bounds
    cond = tx.cond
    if cond.type == X.PreconditionType.PRECOND_TIME:
        return cond.time_bounds
    if cond.type == X.PreconditionType.PRECOND_V2:
        return cond.v2.time_bounds
    return None


def preconditions_v2(env: X.TransactionEnvelope) -> X.PreconditionsV2 | None:
    if env.type == _V0:
        return None
    cond = inner_transaction(env).cond
    return cond.v2 if cond.type == X.PreconditionType.PRECOND_V2 else None


def soroban_data(env: X.TransactionEnvelope) -> X.SorobanTransactionData | None:
    if env.type == _V0:
        return None
    ext = inner_transaction(env).ext
    return ext.soroban_data if ext.v == 1 else None


def operation_source(op: X.Operation, env: X.TransactionEnvelope) -> X.MuxedAccount:
    """An operation's source: its own if set, else the (inner) transaction's."""
    return op.source_account if op.source_account is not None else source_account(env)
