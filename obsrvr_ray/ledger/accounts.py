"""Account addresses as strkeys: plain (G), muxed (M), and the plain key behind a muxed one."""

from __future__ import annotations

from stellar_sdk import xdr as X

from obsrvr_ray import strkey


def account_id(account: X.AccountID) -> str:
    return strkey.account(account.account_id.ed25519.uint256)


def muxed_parts(account: X.MuxedAccount) -> tuple[str, str | None, int | None]:
    """(G address, M address or None, mux id or None)."""
    if account.type == X.CryptoKeyType.KEY_TYPE_MUXED_ED25519:
        med = account.med25519
        key = med.ed25519.uint256
        mux_id = med.id.uint64
        return strkey.account(key), strkey.muxed(key, mux_id), mux_id
    return strkey.account(account.ed25519.uint256), None, None


def muxed_address(account: X.MuxedAccount) -> str:
    """The address as written: M for muxed accounts, G otherwise."""
    g, m, _ = muxed_parts(account)
    return m or g


def base_account(account: X.MuxedAccount) -> str:
    """The G address a muxed account pays from."""
    return muxed_parts(account)[0]
