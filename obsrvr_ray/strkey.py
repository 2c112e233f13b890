"""Stellar strkeys (SEP-23): version byte + payload + CRC16-XModem, in RFC 4648 base32.

Encoding is on the hot path of every table (addresses, signers, contracts), so it uses the C
CRC from binascii and caches the most recent keys.
"""

from __future__ import annotations

import base64
import binascii
import struct
from functools import lru_cache

ACCOUNT = 6 << 3  # G
MUXED = 12 << 3  # M
SEED = 18 << 3  # S
PRE_AUTH_TX = 19 << 3  # T
HASH_X = 23 << 3  # X
SIGNED_PAYLOAD = 15 << 3  # P
CONTRACT = 2 << 3  # C
LIQUIDITY_POOL = 11 << 3  # L
CLAIMABLE_BALANCE = 1 << 3  # B


def encode(version: int, payload: bytes) -> str:
    body = bytes([version]) + payload
    crc = binascii.crc_hqx(body, 0)
    return base64.b32encode(body + struct.pack("<H", crc)).decode().rstrip("=")


@lru_cache(maxsize=65536)
def account(ed25519: bytes) -> str:
    return encode(ACCOUNT, ed25519)


@lru_cache(maxsize=16384)
def muxed(ed25519: bytes, mux_id: int) -> str:
    return encode(MUXED, ed25519 + struct.pack(">Q", mux_id))


@lru_cache(maxsize=16384)
def contract(contract_id: bytes) -> str:
    return encode(CONTRACT, contract_id)


@lru_cache(maxsize=4096)
def liquidity_pool(pool_id: bytes) -> str:
    return encode(LIQUIDITY_POOL, pool_id)


@lru_cache(maxsize=4096)
def claimable_balance(balance_id_v0: bytes) -> str:
    """B-strkey of a ClaimableBalanceID of type V0: the type byte (0) precedes the hash."""
    return encode(CLAIMABLE_BALANCE, b"\x00" + balance_id_v0)


@lru_cache(maxsize=65536)
def decode(text: str) -> tuple[int, bytes]:
    """(version byte, payload) of a strkey; ValueError when the checksum or form is wrong."""
    pad = "=" * (-len(text) % 8)
    try:
        raw = base64.b32decode(text + pad)
    except binascii.Error as exc:
        raise ValueError(f"not a strkey: {text!r}") from exc
    if len(raw) < 3:
        raise ValueError(f"not a strkey: {text!r}")
    body, crc = raw[:-2], struct.unpack("<H", raw[-2:])[0]
    if binascii.crc_hqx(body, 0) != crc:
        raise ValueError(f"bad strkey checksum: {text!r}")
    return body[0], body[1:]
