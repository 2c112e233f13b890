"""The order stellar-core applies a transaction set in, recomputed from the envelopes.

Exports that lost the order (stellar-etl's golden files are sorted as text, for instance) can
get their 1-based transaction indexes, hence their TOIDs, back from it. The rule, per phase
(classic transactions first, then Soroban ones): queue each source account's transactions by
sequence number; the i-th batch takes the i-th transaction of every queue; each batch is sorted
by (SHA-256 of the whole envelope XOR the transaction-set hash). Checked against the apply
order recorded in every real ledger under ../shared/data (protocols 9 to 26).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from stellar_sdk import xdr as X

from obsrvr_ray.ledger import envelope as E
from obsrvr_ray.ledger.accounts import base_account


def _xor_key(full_hash: bytes, set_hash: bytes) -> bytes:
    return (int.from_bytes(full_hash, "big") ^ int.from_bytes(set_hash, "big")).to_bytes(32, "big")


def _phase_order(items: list[tuple[int, X.TransactionEnvelope, bytes]], set_hash: bytes) -> list[int]:
    queues: dict[str, list[tuple[int, bytes, int]]] = {}
    for position, env, env_xdr in items:
        seq = E.inner_transaction(env).seq_num.sequence_number.int64
        full = hashlib.sha256(env_xdr).digest()
        queues.setdefault(base_account(E.source_account(env)), []).append((seq, full, position))
    for queue in queues.values():
        queue.sort()
    order: list[int] = []
    depth = 0
    while True:
        batch = [q[depth] for q in queues.values() if len(q) > depth]
        if not batch:
            return order
        batch.sort(key=lambda t: _xor_key(t[1], set_hash))
        order.extend(position for _, _, position in batch)
        depth += 1


def apply_order(envelopes: Sequence[X.TransactionEnvelope], envelope_xdrs: Sequence[bytes],
                tx_set_hash: bytes) -> list[int]:
    """Positions of `envelopes` (a complete transaction set, any order) in apply order."""
    classic, soroban = [], []
    for position, (env, env_xdr) in enumerate(zip(envelopes, envelope_xdrs, strict=True)):
        (soroban if E.soroban_data(env) is not None else classic).append((position, env, env_xdr))
    return _phase_order(classic, tx_set_hash) + _phase_order(soroban, tx_set_hash)
