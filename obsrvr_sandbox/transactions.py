"""Charging fees and applying transactions, the way a protocol-23+ validator records them.

Closing a ledger is two passes (see close.py): every transaction's fee is charged first, in
apply order, then each transaction is applied. Applying bumps the source's sequence number
(even when the operations then fail), applies the operations in one write set, and keeps it
only if every operation succeeded: a failed transaction has consumed its fee and sequence
number and changed nothing else.

Fees: a classic transaction is charged min(fee bid, base fee × operations); a fee bump pays
for one more operation, from its fee source; the inner result records a fee of 0, as in the
real protocol-26 pubnet ledgers (protocol-24 ones still recorded the inner fee there). A Soroban
transaction is charged its whole resource fee on top of that inclusion fee; what it did not use
(see soroban_fees.py) is refunded to the fee source after every transaction has applied, and
the result records the fee net of the refund.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from stellar_sdk import xdr as X

from obsrvr_ray.ledger.hashing import inner_transaction_hash, transaction_hash
from obsrvr_sandbox.entries import ContractBalanceEntry, ContractInstanceEntry
from obsrvr_sandbox.moves import Move
from obsrvr_sandbox.ops import OpContext, OpOutcome, apply_operation
from obsrvr_sandbox.ops.base import inner_result, muxed_address
from obsrvr_sandbox.soroban_fees import SorobanCharge, soroban_charge
from obsrvr_sandbox.state import Change, ChangeType, EntryTxn, LedgerInfo

_TX = X.EnvelopeType.ENVELOPE_TYPE_TX
_FEE_BUMP = X.EnvelopeType.ENVELOPE_TYPE_TX_FEE_BUMP
_CODES = X.TransactionResultCode


@dataclass(frozen=True, slots=True)
class SubmittedTx:
    """An envelope with what applying it needs, worked out once as it enters a transaction set."""

    envelope: X.TransactionEnvelope
    xdr: bytes  # the envelope's encoding, signatures included
    hash: bytes
    inner_hash: bytes | None  # fee bumps only
    tx: X.Transaction  # the transaction whose operations run (the inner one of a fee bump)
    source: str
    fee_source: str

    @classmethod
    def from_envelope(
        cls, envelope: X.TransactionEnvelope, passphrase: str, *, tx_hash: bytes | None = None
    ) -> SubmittedTx:
        """`tx_hash` saves hashing again when the caller hashed the envelope to sign it."""
        if envelope.type == _FEE_BUMP:
            bump = envelope.fee_bump.tx
            tx = bump.inner_tx.v1.tx
            fee_source = muxed_address(bump.fee_source)[0]
        elif envelope.type == _TX:
            tx = envelope.v1.tx
            fee_source = muxed_address(tx.source_account)[0]
        else:
            raise ValueError(f"the sandbox applies v1 and fee-bump envelopes, not {envelope.type.name}")
        return cls(
            envelope=envelope,
            xdr=envelope.to_xdr_bytes(),
            hash=tx_hash or transaction_hash(envelope, passphrase),
            inner_hash=inner_transaction_hash(envelope, passphrase),
            tx=tx,
            source=muxed_address(tx.source_account)[0],
            fee_source=fee_source,
        )

    @property
    def operation_count(self) -> int:
        return len(self.tx.operations)

    @property
    def soroban(self) -> X.SorobanTransactionData | None:
        return self.tx.ext.soroban_data if self.tx.ext.v == 1 else None

    def fee_charged(self, base_fee: int) -> int:
        """Charged up front: the resource fee, if any, plus the inclusion fee."""
        resource_fee = self.soroban.resource_fee.int64 if self.soroban is not None else 0
        if self.envelope.type == _FEE_BUMP:
            bid, operations = self.envelope.fee_bump.tx.fee.int64, self.operation_count + 1
        else:
            bid, operations = self.tx.fee.uint32, self.operation_count
        return resource_fee + min(bid - resource_fee, base_fee * operations)


@dataclass(slots=True)
class FeeCharge:
    source: str
    amount: int
    changes: list[Change]


@dataclass(slots=True)
class AppliedTx:
    """Everything the ledger close meta records about one applied transaction."""

    submitted: SubmittedTx
    fee: FeeCharge
    result: X.TransactionResultPair
    success: bool
    changes_before: list[Change]
    op_changes: list[list[Change]]  # empty when the transaction failed
    op_moves: list[list[Move]]  # idem
    soroban: SorobanCharge | None = None
    return_value: X.SCVal | None = None  # of a successful host function

    @property
    def refund(self) -> int:
        return self.soroban.refund if self.soroban is not None else 0

    @property
    def fee_charged(self) -> int:
        """The fee the result records: charged up front, less the refund."""
        return self.fee.amount - self.refund


def charge_fee(txn: EntryTxn, tx: SubmittedTx, ledger: LedgerInfo) -> FeeCharge:
    """First pass of a ledger close: take the fee from the fee source, in its own write set."""
    fee_txn = txn.child()
    amount = tx.fee_charged(ledger.base_fee)
    account = fee_txn.account(tx.fee_source)
    if account is None or account.balance < amount:
        raise ValueError(f"fee source {tx.fee_source} cannot pay {amount} stroops for {tx.hash.hex()}")
    fee_txn.put(replace(account, balance=account.balance - amount))
    charge = FeeCharge(tx.fee_source, amount, fee_txn.changes())
    fee_txn.commit()
    return charge


def apply_transaction(txn: EntryTxn, tx: SubmittedTx, fee: FeeCharge, ledger: LedgerInfo) -> AppliedTx:
    """Second pass: bump the sequence number, then apply all operations or none."""
    before = txn.child()
    if tx.envelope.type == _FEE_BUMP:
        # Real ledgers show the fee source here as an unchanged STATE/UPDATED pair ahead of
        # the inner source's sequence bump.
        before.put(before.account(tx.fee_source))
    source = before.account(tx.source)
    seq = tx.tx.seq_num.sequence_number.int64
    if source is None or seq != source.seq_num + 1:
        raise ValueError(f"transaction {tx.hash.hex()} has a bad sequence number for {tx.source}")
    before.put(replace(source, seq_num=seq, seq_ledger=ledger.sequence, seq_time=ledger.close_time))
    changes_before = before.changes()
    before.commit()

    ops_txn = txn.child()
    results: list[X.OperationResult] = []
    op_changes: list[list[Change]] = []
    op_moves: list[list[Move]] = []
    outcomes: list[OpOutcome] = []
    success = True
    for index, op in enumerate(tx.tx.operations):
        op_txn = ops_txn.child()
        op_source = muxed_address(op.source_account)[0] if op.source_account else tx.source
        if op_txn.account(op_source) is None:
            outcome = OpOutcome(X.OperationResult(X.OperationResultCode.opNO_ACCOUNT), False)
        else:
            outcome = apply_operation(OpContext(op_txn, op_source, ledger, tx.source, seq, index), op.body)
        results.append(outcome.result)
        outcomes.append(outcome)
        success = success and outcome.success
        if success:
            op_changes.append(op_txn.changes())
            op_moves.append(outcome.moves)
            op_txn.commit()
    charge = None
    if tx.soroban is not None:
        charge, success = _charge_resources(tx.soroban, success, op_changes, op_moves, results)
    if success:
        ops_txn.commit()
    else:
        op_changes, op_moves = [], []
    return AppliedTx(
        submitted=tx,
        fee=fee,
        result=_result_pair(tx, fee.amount - (charge.refund if charge else 0), success, results),
        success=success,
        changes_before=changes_before,
        op_changes=op_changes,
        op_moves=op_moves,
        soroban=charge,
        return_value=outcomes[-1].return_value if success and charge is not None else None,
    )


def _charge_resources(
    data: X.SorobanTransactionData,
    success: bool,
    op_changes: list[list[Change]],
    op_moves: list[list[Move]],
    results: list[X.OperationResult],
) -> tuple[SorobanCharge, bool]:
    """What the Soroban transaction used; a success whose events and rent do not fit the
    declared resource fee fails after all (INSUFFICIENT_REFUNDABLE_FEE)."""
    if not success:
        return soroban_charge(data, 0, 0), False
    created = sum(
        1
        for changes in op_changes
        for change in changes
        if change.type is ChangeType.CREATED and isinstance(change.entry, ContractInstanceEntry | ContractBalanceEntry)
    )
    charge = soroban_charge(data, sum(len(moves) for moves in op_moves), created)
    if charge.refund >= 0:
        return charge, True
    code = X.InvokeHostFunctionResultCode.INVOKE_HOST_FUNCTION_INSUFFICIENT_REFUNDABLE_FEE
    results[-1] = inner_result(
        X.OperationType.INVOKE_HOST_FUNCTION, invoke_host_function_result=X.InvokeHostFunctionResult(code)
    )
    return soroban_charge(data, 0, 0), False


def refund_fee(txn: EntryTxn, applied: AppliedTx) -> list[Change]:
    """After every transaction of the ledger: give the fee source what its Soroban transaction
    did not use (the post-apply fee processing changes)."""
    if applied.refund <= 0:
        return []
    refund_txn = txn.child()
    account = refund_txn.account(applied.fee.source)
    refund_txn.put(replace(account, balance=account.balance + applied.refund))
    changes = refund_txn.changes()
    refund_txn.commit()
    return changes


def _result_pair(tx: SubmittedTx, fee: int, success: bool, results: list[X.OperationResult]) -> X.TransactionResultPair:
    code = _CODES.txSUCCESS if success else _CODES.txFAILED
    if tx.envelope.type == _FEE_BUMP:
        inner = X.InnerTransactionResultPair(
            transaction_hash=X.Hash(tx.inner_hash),
            result=X.InnerTransactionResult(
                fee_charged=X.Int64(0),
                result=X.InnerTransactionResultResult(code, results=results),
                ext=X.InnerTransactionResultExt(0),
            ),
        )
        outer = _CODES.txFEE_BUMP_INNER_SUCCESS if success else _CODES.txFEE_BUMP_INNER_FAILED
        result = X.TransactionResultResult(outer, inner_result_pair=inner)
    else:
        result = X.TransactionResultResult(code, results=results)
    return X.TransactionResultPair(
        transaction_hash=X.Hash(tx.hash),
        result=X.TransactionResult(fee_charged=X.Int64(fee), result=result, ext=X.TransactionResultExt(0)),
    )
