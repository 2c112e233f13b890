"""Closing a ledger: apply a transaction set and write the LedgerCloseMeta (v2) a protocol-23+
validator would emit for it.

What ties the pieces together, as in real ledgers: the header's `scpValue.txSetHash` is the
SHA-256 of the GeneralizedTransactionSet XDR, `txSetResultHash` the SHA-256 of the
TransactionResultSet (results in apply order), `previousLedgerHash` the hash of the previous
header, and the header-history hash the SHA-256 of this header. The transaction set has the two
phases of real ledgers: classic transactions, sorted by the SHA-256 of their XDR, then the
parallel Soroban phase, one execution stage whose clusters group the transactions that write a
common entry. Classic transactions apply first, then Soroban ones; Soroban refunds come after
all of them (post-apply fee processing, and a negative fee event at AFTER_ALL_TXS). The header's
id pool follows the offer ids handed out.

The sandbox keeps no bucket list: `bucketListHash` is a synthetic chain (SHA-256 of the
previous one and this ledger's result hash) and the skip list stays zero.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from stellar_sdk import Keypair
from stellar_sdk import xdr as X

from obsrvr_ray.ledger.hashing import header_hash
from obsrvr_ray.network import network_id
from obsrvr_sandbox.encoded import Encoded
from obsrvr_sandbox.entry_xdr import changes_xdr
from obsrvr_sandbox.events import fee_event, move_event
from obsrvr_sandbox.state import Change, EntryTxn, LedgerInfo, LedgerState
from obsrvr_sandbox.transactions import AppliedTx, SubmittedTx, apply_transaction, charge_fee, refund_fee

PROTOCOL_VERSION = 26
BASE_FEE = 100  # stroops per operation
BASE_RESERVE = 5_000_000  # 0.5 XLM
MAX_TX_SET_SIZE = 1000  # operations
TOTAL_COINS = 10**18  # 100 billion XLM, all held by the root account at genesis
SOROBAN_FEE_WRITE_1KB = 1000

_ZERO_HASH = X.Hash(bytes(32))
_NO_EXT = X.ExtensionPoint(0)
_NO_CHANGES = X.LedgerEntryChanges([])
_SCP_VALUE = struct.pack(">i", X.EnvelopeType.ENVELOPE_TYPE_SCPVALUE.value)


@dataclass(frozen=True, slots=True)
class ClosedLedger:
    header: X.LedgerHeader
    hash: bytes
    close_meta: bytes  # XDR LedgerCloseMeta

    @property
    def sequence(self) -> int:
        return self.header.ledger_seq.uint32


def genesis_header(sequence: int, close_time: int, passphrase: str) -> X.LedgerHeader:
    """The ledger before the first generated one; it is hashed but never emitted."""
    return X.LedgerHeader(
        ledger_version=X.Uint32(PROTOCOL_VERSION),
        previous_ledger_hash=_ZERO_HASH,
        scp_value=X.StellarValue(
            tx_set_hash=_ZERO_HASH,
            close_time=X.TimePoint(X.Uint64(close_time)),
            upgrades=[],
            ext=X.StellarValueExt(X.StellarValueType.STELLAR_VALUE_BASIC),
        ),
        tx_set_result_hash=_ZERO_HASH,
        bucket_list_hash=X.Hash(hashlib.sha256(b"sandbox genesis" + network_id(passphrase)).digest()),
        ledger_seq=X.Uint32(sequence),
        total_coins=X.Int64(TOTAL_COINS),
        fee_pool=X.Int64(0),
        inflation_seq=X.Uint32(0),
        id_pool=X.Uint64(0),
        base_fee=X.Uint32(BASE_FEE),
        base_reserve=X.Uint32(BASE_RESERVE),
        max_tx_set_size=X.Uint32(MAX_TX_SET_SIZE),
        skip_list=[_ZERO_HASH] * 4,
        ext=X.LedgerHeaderExt(0),
    )


def ledger_info(previous: X.LedgerHeader, close_time: int, passphrase: str) -> LedgerInfo:
    return LedgerInfo(
        sequence=previous.ledger_seq.uint32 + 1,
        close_time=close_time,
        base_fee=previous.base_fee.uint32,
        base_reserve=previous.base_reserve.uint32,
        network_id=network_id(passphrase),
    )


def apply_transactions(
    txn: EntryTxn, txs: list[SubmittedTx], ledger: LedgerInfo
) -> tuple[list[AppliedTx], list[list[Change]]]:
    """All fees first, then every transaction in order (the protocol's passes), then the
    Soroban refunds: the applied transactions and each one's post-apply fee changes."""
    fees = [charge_fee(txn, tx, ledger) for tx in txs]
    applied = [apply_transaction(txn, tx, fee, ledger) for tx, fee in zip(txs, fees, strict=True)]
    return applied, [refund_fee(txn, item) for item in applied]


def close_ledger(
    state: LedgerState,
    txs: list[SubmittedTx],
    previous: X.LedgerHeader,
    close_time: int,
    passphrase: str,
    validator: Keypair,
) -> ClosedLedger:
    """Apply `txs` to `state` and build the ledger that records it: classic transactions in the
    order given, then the Soroban ones (their phase applies second)."""
    txs = [tx for tx in txs if tx.soroban is None] + [tx for tx in txs if tx.soroban is not None]
    previous_hash = header_hash(previous)
    ledger = ledger_info(previous, close_time, passphrase)
    txn = EntryTxn(state, ledger.sequence)
    applied, refunds = apply_transactions(txn, txs, ledger)
    txn.commit()

    tx_set = Encoded.of(_tx_set(txs, previous_hash))
    tx_set_hash = hashlib.sha256(tx_set.data).digest()
    result_set = X.TransactionResultSet([a.result for a in applied])
    result_hash = hashlib.sha256(result_set.to_xdr_bytes()).digest()
    signature = validator.sign(network_id(passphrase) + _SCP_VALUE + tx_set_hash + struct.pack(">Q", close_time))
    header = X.LedgerHeader(
        ledger_version=X.Uint32(PROTOCOL_VERSION),
        previous_ledger_hash=X.Hash(previous_hash),
        scp_value=X.StellarValue(
            tx_set_hash=X.Hash(tx_set_hash),
            close_time=X.TimePoint(X.Uint64(close_time)),
            upgrades=[],
            ext=X.StellarValueExt(
                X.StellarValueType.STELLAR_VALUE_SIGNED,
                lc_value_signature=X.LedgerCloseValueSignature(
                    node_id=X.NodeID(validator.xdr_public_key()), signature=X.Signature(signature)
                ),
            ),
        ),
        tx_set_result_hash=X.Hash(result_hash),
        bucket_list_hash=X.Hash(hashlib.sha256(previous.bucket_list_hash.hash + result_hash).digest()),
        ledger_seq=X.Uint32(ledger.sequence),
        total_coins=previous.total_coins,
        fee_pool=X.Int64(previous.fee_pool.int64 + sum(a.fee_charged for a in applied)),
        inflation_seq=previous.inflation_seq,
        id_pool=X.Uint64(state.id_pool),
        base_fee=previous.base_fee,
        base_reserve=previous.base_reserve,
        max_tx_set_size=previous.max_tx_set_size,
        skip_list=previous.skip_list,
        ext=X.LedgerHeaderExt(0),
    )
    this_hash = header_hash(header)
    meta = X.LedgerCloseMeta(
        2,
        v2=X.LedgerCloseMetaV2(
            ext=X.LedgerCloseMetaExt(
                1,
                v1=X.LedgerCloseMetaExtV1(ext=_NO_EXT, soroban_fee_write1_kb=X.Int64(SOROBAN_FEE_WRITE_1KB)),
            ),
            ledger_header=X.LedgerHeaderHistoryEntry(
                hash=X.Hash(this_hash), header=header, ext=X.LedgerHeaderHistoryEntryExt(0)
            ),
            tx_set=tx_set,
            tx_processing=[
                _result_meta(a, post_apply, ledger.network_id) for a, post_apply in zip(applied, refunds, strict=True)
            ],
            upgrades_processing=[],
            scp_info=[],
            total_byte_size_of_live_soroban_state=X.Uint64(0),
            evicted_keys=[],
        ),
    )
    return ClosedLedger(header, this_hash, meta.to_xdr_bytes())


def _tx_set(txs: list[SubmittedTx], previous_hash: bytes) -> X.GeneralizedTransactionSet:
    classic = [tx for tx in txs if tx.soroban is None]
    encodings = sorted((tx.xdr for tx in classic), key=lambda data: hashlib.sha256(data).digest())
    components = []
    if encodings:
        components.append(
            X.TxSetComponent(
                X.TxSetComponentType.TXSET_COMP_TXS_MAYBE_DISCOUNTED_FEE,
                txs_maybe_discounted_fee=X.TxSetComponentTxsMaybeDiscountedFee(
                    base_fee=X.Int64(BASE_FEE), txs=[Encoded(data) for data in encodings]
                ),
            )
        )
    clusters = _clusters([tx for tx in txs if tx.soroban is not None])
    stages = [X.ParallelTxExecutionStage([X.DependentTxCluster(cluster) for cluster in clusters])] if clusters else []
    return X.GeneralizedTransactionSet(
        1,
        v1_tx_set=X.TransactionSetV1(
            previous_ledger_hash=X.Hash(previous_hash),
            phases=[
                X.TransactionPhase(0, v0_components=components),
                X.TransactionPhase(
                    1,
                    parallel_txs_component=X.ParallelTxsComponent(base_fee=X.Int64(BASE_FEE), execution_stages=stages),
                ),
            ],
        ),
    )


def _clusters(txs: list[SubmittedTx]) -> list[list[Encoded]]:
    """Soroban transactions grouped so that two that write a common entry share a cluster;
    each cluster keeps apply order."""
    groups: list[tuple[set[bytes], list[Encoded]]] = []
    for tx in txs:
        footprint = tx.soroban.resources.footprint
        writes = {key.to_xdr_bytes() for key in footprint.read_write}
        merged = [group for group in groups if group[0] & writes]
        keys, members = writes, []
        for group in merged:
            groups.remove(group)
            keys |= group[0]
            members += group[1]
        groups.append((keys, [*members, Encoded(tx.xdr)]))
    return [members for _, members in groups]


def _result_meta(applied: AppliedTx, post_apply: list[Change], network_id: bytes) -> X.TransactionResultMetaV1:
    memo = applied.submitted.tx.memo
    operations = [
        X.OperationMetaV2(
            ext=_NO_EXT,
            changes=changes_xdr(changes),
            events=[move_event(move, network_id, memo) for move in moves],
        )
        for changes, moves in zip(applied.op_changes, applied.op_moves, strict=True)
    ]
    events = [fee_event(applied.fee.source, applied.fee.amount, network_id)]
    if applied.refund:
        events.append(fee_event(applied.fee.source, -applied.refund, network_id, refund=True))
    meta = X.TransactionMetaV4(
        ext=_NO_EXT,
        tx_changes_before=changes_xdr(applied.changes_before),
        operations=operations,
        tx_changes_after=_NO_CHANGES,
        soroban_meta=_soroban_meta(applied),
        events=events,
        diagnostic_events=[],
    )
    return X.TransactionResultMetaV1(
        ext=_NO_EXT,
        result=applied.result,
        fee_processing=changes_xdr(applied.fee.changes),
        tx_apply_processing=X.TransactionMeta(4, v4=meta),
        post_tx_apply_fee_processing=changes_xdr(post_apply),
    )


def _soroban_meta(applied: AppliedTx) -> X.SorobanTransactionMetaV2 | None:
    charge = applied.soroban
    if charge is None:
        return None
    fees = X.SorobanTransactionMetaExtV1(
        ext=_NO_EXT,
        total_non_refundable_resource_fee_charged=X.Int64(charge.non_refundable),
        total_refundable_resource_fee_charged=X.Int64(charge.refundable),
        rent_fee_charged=X.Int64(charge.rent),
    )
    return X.SorobanTransactionMetaV2(ext=X.SorobanTransactionMetaExt(1, v1=fees), return_value=applied.return_value)
