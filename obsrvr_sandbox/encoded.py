"""XDR values encoded once and embedded as they are.

A ledger's close meta repeats itself: the transaction set is packed once for its hash and
again inside the meta, and most entry snapshots are recorded twice (UPDATED by one change,
STATE by the next). stellar-sdk packs its pure-Python objects field by field, so encoding these
once keeps generation fast. An `Encoded` value stands in for the XDR object it was made from
wherever stellar-sdk packs one; it is never decoded.
"""

from __future__ import annotations

from typing import Protocol

from xdrlib3 import Packer


class _Packable(Protocol):
    def to_xdr_bytes(self) -> bytes: ...


class Encoded:
    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        if len(data) % 4:
            raise ValueError("XDR encodings are a multiple of 4 bytes")
        self.data = data

    @classmethod
    def of(cls, value: _Packable) -> Encoded:
        return cls(value.to_xdr_bytes())

    def pack(self, packer: Packer) -> None:
        packer.pack_fopaque(len(self.data), self.data)
