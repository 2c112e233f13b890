"""What every operation kind receives and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from stellar_sdk import Asset, StrKey
from stellar_sdk import xdr as X

from obsrvr_ray.sandbox.state import EntryTxn, LedgerInfo

_NATIVE = Asset.native()


@dataclass(frozen=True, slots=True)
class Move:
    """One movement of an asset between two accounts, as CAP-67 events report it."""

    asset: Asset
    sender: str
    receiver: str
    amount: int
    # The movement lands at the operation's destination, so that destination's muxed id (or
    # the transaction memo) identifies the recipient; False for legs such as offer trades.
    to_destination: bool = True
    receiver_muxed_id: int | None = None


@dataclass(frozen=True, slots=True)
class OpContext:
    txn: EntryTxn  # the operation's own write set, dropped if the transaction fails
    source: str  # G-address of the operation's source account
    ledger: LedgerInfo


@dataclass(slots=True)
class OpOutcome:
    result: X.OperationResult
    success: bool
    moves: list[Move] = field(default_factory=list)


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


def asset_from_xdr(asset: X.Asset | X.ChangeTrustAsset) -> Asset:
    if asset.type == X.AssetType.ASSET_TYPE_NATIVE:
        return _NATIVE
    if asset.type == X.AssetType.ASSET_TYPE_CREDIT_ALPHANUM4:
        alpha4 = asset.alpha_num4
        return _issued_asset(alpha4.asset_code.asset_code4, alpha4.issuer.account_id.ed25519.uint256)
    if asset.type == X.AssetType.ASSET_TYPE_CREDIT_ALPHANUM12:
        alpha12 = asset.alpha_num12
        return _issued_asset(alpha12.asset_code.asset_code12, alpha12.issuer.account_id.ed25519.uint256)
    raise UnsupportedOperation("liquidity pool shares are not modelled by the sandbox")
