"""Assets as token transfers name them, and the Stellar Asset Contract (SAC) id of each."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache

from stellar_sdk import xdr as X

from obsrvr_ray import strkey
from obsrvr_ray.network import network_id


@dataclass(frozen=True)
class Asset:
    """A classic asset; `code is None` means XLM. Custom (non-SAC) tokens have no Asset."""

    code: str | None = None
    issuer: str | None = None

    @property
    def is_native(self) -> bool:
        return self.code is None

    @cached_property
    def type_name(self) -> str:
        if self.code is None:
            return "native"
        return "credit_alphanum12" if len(self.code) > 4 else "credit_alphanum4"

    @cached_property
    def canonical(self) -> str:
        """'native' or 'CODE:ISSUER' (the key of balance reconciliation)."""
        return "native" if self.code is None else f"{self.code}:{self.issuer}"

    @cached_property
    def columns(self) -> tuple[str, str, str | None, str | None]:
        """(asset, asset_type, asset_code, asset_issuer) as token_transfers rows hold them."""
        return self.etl_name, self.type_name, self.code, self.issuer

    @cached_property
    def etl_name(self) -> str:
        """stellar-etl's `asset` column: 'native' or 'credit_alphanum4:CODE:ISSUER'."""
        return "native" if self.code is None else f"{self.type_name}:{self.code}:{self.issuer}"

    def to_xdr(self) -> X.Asset:
        if self.code is None:
            return X.Asset(X.AssetType.ASSET_TYPE_NATIVE)
        issuer = X.AccountID(X.PublicKey(X.PublicKeyType.PUBLIC_KEY_TYPE_ED25519,
                                         X.Uint256(strkey.decode(self.issuer)[1])))
        raw = self.code.encode()
        if len(raw) <= 4:
            return X.Asset(X.AssetType.ASSET_TYPE_CREDIT_ALPHANUM4,
                           alpha_num4=X.AlphaNum4(X.AssetCode4(raw.ljust(4, b"\0")), issuer))
        return X.Asset(X.AssetType.ASSET_TYPE_CREDIT_ALPHANUM12,
                       alpha_num12=X.AlphaNum12(X.AssetCode12(raw.ljust(12, b"\0")), issuer))


NATIVE = Asset()


def _code(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("ascii", errors="replace")


def from_xdr(asset: X.Asset | X.TrustLineAsset) -> Asset | None:
    """An Asset from an XDR Asset or TrustLineAsset; None for pool shares."""
    kind = asset.type
    if kind == X.AssetType.ASSET_TYPE_NATIVE:
        return NATIVE
    if kind == X.AssetType.ASSET_TYPE_CREDIT_ALPHANUM4:
        a = asset.alpha_num4
        return _cached(_code(a.asset_code.asset_code4), a.issuer.account_id.ed25519.uint256)
    if kind == X.AssetType.ASSET_TYPE_CREDIT_ALPHANUM12:
        a = asset.alpha_num12
        return _cached(_code(a.asset_code.asset_code12), a.issuer.account_id.ed25519.uint256)
    return None


@lru_cache(maxsize=8192)
def _cached(code: str, issuer_key: bytes) -> Asset:
    return Asset(code, strkey.account(issuer_key))


_SEP11_CODE = re.compile(r"^[A-Za-z0-9]{1,12}$")


@lru_cache(maxsize=8192)
def parse_sep11(text: str) -> Asset | None:
    """'native' or 'CODE:ISSUER' as a SAC writes its asset in event topics; None if malformed."""
    if text.lower() == "native":
        return NATIVE
    if "," in text:
        return None
    parts = text.split(":")
    if len(parts) != 2 or not _SEP11_CODE.match(parts[0]):
        return None
    try:
        version, _ = strkey.decode(parts[1])
    except ValueError:
        return None
    if version != strkey.ACCOUNT:
        return None
    return Asset(parts[0], parts[1])


def sac_contract_hash(asset: X.Asset, net_id: bytes) -> bytes:
    """The id of an asset's Stellar Asset Contract: SHA-256 of the contract-id preimage 'from
    asset' under the network id (the one place this rule is written; the sandbox uses it too)."""
    preimage = X.HashIDPreimage(
        X.EnvelopeType.ENVELOPE_TYPE_CONTRACT_ID,
        contract_id=X.HashIDPreimageContractID(
            X.Hash(net_id),
            X.ContractIDPreimage(X.ContractIDPreimageType.CONTRACT_ID_PREIMAGE_FROM_ASSET, from_asset=asset),
        ),
    )
    return hashlib.sha256(preimage.to_xdr_bytes()).digest()


@lru_cache(maxsize=8192)
def sac_contract_strkey(asset: Asset, passphrase: str) -> str:
    """C-strkey of the asset's Stellar Asset Contract on the network."""
    return strkey.contract(sac_contract_hash(asset.to_xdr(), network_id(passphrase)))


@lru_cache(maxsize=8192)
def sac_of_sep11(text: str, passphrase: str) -> tuple[Asset, str] | None:
    """The asset a SAC event names in its last topic and that asset's SAC id (None when the
    text is not an asset): keyed on the text, which every event of a token repeats."""
    asset = parse_sep11(text) if text else None
    return None if asset is None else (asset, sac_contract_strkey(asset, passphrase))
