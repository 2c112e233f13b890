"""Strkeys of every kind of holder the sandbox moves value between (G accounts, L liquidity
pools, B claimable balances, C contracts) and their XDR forms.

Holders travel through the generator as strkeys, the way token-transfer events name them; they
become XDR only when an entry, a key or an event is written.
"""

from __future__ import annotations

from functools import lru_cache

from stellar_sdk import Keypair, StrKey
from stellar_sdk import xdr as X


@lru_cache(maxsize=65536)
def account_id_xdr(account_id: str) -> X.AccountID:
    return Keypair.from_public_key(account_id).xdr_account_id()


def pool_address(pool_id: bytes) -> str:
    return StrKey.encode_liquidity_pool(pool_id)


def balance_address(balance_id: bytes) -> str:
    """A V0 claimable balance id: the type byte 0, then the hash."""
    return StrKey.encode_claimable_balance(b"\0" + balance_id)


def contract_address(contract_id: bytes) -> str:
    return StrKey.encode_contract(contract_id)


def balance_id_xdr(balance_id: bytes) -> X.ClaimableBalanceID:
    return X.ClaimableBalanceID(X.ClaimableBalanceIDType.CLAIMABLE_BALANCE_ID_TYPE_V0, v0=X.Hash(balance_id))


def contract_sc_address(contract_id: bytes) -> X.SCAddress:
    return X.SCAddress(X.SCAddressType.SC_ADDRESS_TYPE_CONTRACT, contract_id=X.ContractID(X.Hash(contract_id)))


@lru_cache(maxsize=65536)
def sc_address(address: str) -> X.SCAddress:
    """The SCAddress of a G, C, L or B strkey, as CAP-67 events and contract keys write it."""
    kind = address[0]
    if kind == "G":
        return X.SCAddress(X.SCAddressType.SC_ADDRESS_TYPE_ACCOUNT, account_id=account_id_xdr(address))
    if kind == "C":
        return contract_sc_address(StrKey.decode_contract(address))
    if kind == "L":
        pool = X.PoolID(X.Hash(StrKey.decode_liquidity_pool(address)))
        return X.SCAddress(X.SCAddressType.SC_ADDRESS_TYPE_LIQUIDITY_POOL, liquidity_pool_id=pool)
    if kind == "B":
        balance_id = balance_id_xdr(StrKey.decode_claimable_balance(address)[1:])
        return X.SCAddress(X.SCAddressType.SC_ADDRESS_TYPE_CLAIMABLE_BALANCE, claimable_balance_id=balance_id)
    raise ValueError(f"no SCAddress for {address!r}")
