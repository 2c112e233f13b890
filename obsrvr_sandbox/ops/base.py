"""What every operation kind receives and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from stellar_sdk import Asset, StrKey
from stellar_sdk import xdr as X

from obsrvr_sandbox.moves import Move
from obsrvr_sandbox.state import EntryTxn, LedgerInfo

_NATIVE = Asset.native()


@dataclass(frozen=True, slots=True)
class OpContext:
    txn: EntryTxn  # the operation's own write set, dropped if the transaction fails
    source: str  # G-address of the operation's source account
    ledger: LedgerInfo
    tx_source: str  # G-address of the transaction's source (inner one of a fee bump)
    tx_seq: int  # the transaction's sequence number
    op_index: int  # 0-based position of the operation in its transaction


@dataclass(slots=True)
class OpOutcome:
    result: X.OperationResult
    success: bool
    moves: list[Move] = field(default_factory=list)
    return_value: X.SCVal | None = None  # what a host function returned


def inner_result(op_type: X.OperationType, **result: object) -> X.OperationResult:
    """Wrap an operation-specific result (e.g. payment_result=...) as opINNER."""
    return X.OperationResult(
        X.OperationResultCode.opINNER,
        tr=X.OperationResultTr(op_type, **result),
    )


class UnsupportedOperation(ValueError):
    """An operation kind (or variant) the sandbox does not model."""


@lru_cache(maxsize=65536)
def _strkey(raw_key: bytes) -> str:
    return StrKey.encode_ed25519_public_key(raw_key)


def address(account_id: X.AccountID) -> str:
    return _strkey(account_id.account_id.ed25519.uint256)


def muxed_address(account: X.MuxedAccount) -> tuple[str, int | None]:
    """(G-address, muxed id or None) of a possibly multiplexed account."""
    if account.type == X.CryptoKeyType.KEY_TYPE_MUXED_ED25519:
        med = account.med25519
        return _strkey(med.ed25519.uint256), med.id.uint64
    return _strkey(account.ed25519.uint256), None


@lru_cache(maxsize=1024)
def _issued_asset(code: bytes, issuer: bytes) -> Asset:
    return Asset(code.rstrip(b"\0").decode(), _strkey(issuer))


def asset_from_xdr(asset: X.Asset | X.ChangeTrustAsset | X.TrustLineAsset) -> Asset:
    if asset.type == X.AssetType.ASSET_TYPE_NATIVE:
        return _NATIVE
    if asset.type == X.AssetType.ASSET_TYPE_CREDIT_ALPHANUM4:
        alpha4 = asset.alpha_num4
        return _issued_asset(alpha4.asset_code.asset_code4, alpha4.issuer.account_id.ed25519.uint256)
    if asset.type == X.AssetType.ASSET_TYPE_CREDIT_ALPHANUM12:
        alpha12 = asset.alpha_num12
        return _issued_asset(alpha12.asset_code.asset_code12, alpha12.issuer.account_id.ed25519.uint256)
    raise UnsupportedOperation("pool shares are not an asset that moves")
