"""Transaction results of every kind, including the inner result of a fee bump."""

from __future__ import annotations

import enum
import re

from stellar_sdk import xdr as X

from obsrvr_ray.xdr.lazy import LazyXdr

_OK = (X.TransactionResultCode.txSUCCESS, X.TransactionResultCode.txFEE_BUMP_INNER_SUCCESS)
_CODES = {code.value: code for code in X.TransactionResultCode}  # a dict look-up is cheaper than the enum call
_WITH_INNER = (X.TransactionResultCode.txFEE_BUMP_INNER_SUCCESS, X.TransactionResultCode.txFEE_BUMP_INNER_FAILED)


def result_code(result: X.TransactionResult) -> X.TransactionResultCode:
    """The result code; read from the bytes while the fast decoder has left the result encoded
    (TransactionResult is feeCharged, then the code)."""
    if type(result) is LazyXdr:
        return _CODES[int.from_bytes(result.to_xdr_bytes()[8:12], "big", signed=True)]
    return result.result.code


def successful(result: X.TransactionResult) -> bool:
    return result_code(result) in _OK


def inner_result(result: X.TransactionResult) -> X.InnerTransactionResult | None:
    if result.result.code in _WITH_INNER:
        return result.result.inner_result_pair.result
    return None


def operation_results(result: X.TransactionResult) -> list[X.OperationResult] | None:
    """Per-operation results, or None when the transaction failed before applying operations."""
    inner = inner_result(result)
    body = inner.result if inner is not None else result.result
    return body.results


def recorded_inner_hash(result: X.TransactionResult) -> bytes | None:
    """The inner transaction's hash as a fee bump's result records it (None for other results);
    ledger.hashing.inner_transaction_hash computes the same hash from the envelope."""
    if result.result.code in _WITH_INNER:
        return result.result.inner_result_pair.transaction_hash.hash
    return None


_PREFIX = re.compile(r"^([a-z]*)(.*)$")


def go_enum_name(member: enum.Enum) -> str:
    """The name stellar/go's generated String() gives an XDR enum value, which stellar-etl
    writes verbatim (e.g. txFEE_BUMP_INNER_SUCCESS -> TransactionResultCodeTxFeeBumpInnerSuccess)."""
    parts = []
    for part in member.name.split("_"):
        lower, rest = _PREFIX.match(part).groups()
        parts.append(lower.capitalize() + rest.capitalize())
    return type(member).__name__ + "".join(parts)
