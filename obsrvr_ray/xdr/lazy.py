"""A value kept as its XDR bytes until something reads it.

Most of a ledger's bytes are ledger-entry changes and Soroban footprints that a given table
never reads; leaving them encoded is what makes our decoder fast. Reading any attribute
decodes the value (once); `to_xdr_bytes()` returns the bytes without decoding. The compiled
decoder also leaves in `scanned_events` what it read on its way past a v4 TransactionMeta: its
contract events in compact form (obsrvr_ray.ledger.compact_events), else None."""

from __future__ import annotations

import base64
from collections.abc import Callable


class LazyXdr:
    __slots__ = ("_cls", "_data", "_decode", "_scanned", "_value")

    def __init__(self, cls: type, data: bytes, decode: Callable[[bytes], object]) -> None:
        self._cls = cls
        self._data = data
        self._decode = decode
        self._value = None
        self._scanned = None

    @property
    def scanned_events(self) -> tuple | None:
        """Not `events`: attribute names of the XDR value must reach it through __getattr__."""
        return self._scanned

    @property
    def value(self) -> object:
        if self._value is None:
            self._value = self._decode(self._data)
        return self._value

    def __getattr__(self, name: str) -> object:
        return getattr(self.value, name)

    def to_xdr_bytes(self) -> bytes:
        return self._data

    def to_xdr(self) -> str:
        return base64.b64encode(self._data).decode()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazyXdr):
            return self._cls is other._cls and self._data == other._data
        return self.value == other

    def __hash__(self) -> int:
        return hash(self._data)

    def __repr__(self) -> str:
        return f"<LazyXdr {self._cls.__name__} {len(self._data)} bytes>"
