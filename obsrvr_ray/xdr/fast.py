"""The XDR decoder the pipeline uses: compiled when the C extension was built, else the
pure-Python form of the same table-driven decoder. `OBSRVR_PURE_XDR=1` forces the latter
(the test suite runs both)."""

from __future__ import annotations

import gc
import hashlib
import os
from functools import cache

from obsrvr_ray.xdr.lazy import LazyXdr
from obsrvr_ray.xdr.pydecode import PyDecoder, XdrError, install_union_defaults
from obsrvr_ray.xdr.type_model import EnumType, Field, StructType, load_schema

try:
    from obsrvr_ray.xdr import _fastxdr
except ImportError:  # no compiler at install time: the pure-Python form serves
    _fastxdr = None

_KINDS = {"ref": 0, "int": 1, "uint": 2, "hyper": 3, "uhyper": 4, "bool": 5, "opaque": 6, "string": 7,
          "optional": 8, "array": 9}
_T_ENUM, _T_STRUCT, _T_UNION = 0, 1, 2
_NO_FIXED = 0xFFFFFFFF

__all__ = ["Codec", "XdrError", "codec", "compiled_available"]


def compiled_available() -> bool:
    return _fastxdr is not None


class _Tables:
    """The schema flattened into the integer tables the C decoder walks."""

    def __init__(self, lazy: frozenset[str], opener) -> None:
        schema = load_schema()
        install_union_defaults(schema)
        self.names = sorted(schema)
        self.ids = {name: i for i, name in enumerate(self.names)}
        self.fields: list[tuple] = []
        self.members: list[tuple[str, int]] = []
        self.types: list[tuple] = []
        for name in self.names:
            t = schema[name]
            open_lazy = opener(name) if name in lazy else None
            if isinstance(t, EnumType):
                self.types.append((_T_ENUM, t.cls, None, dict(t.members), 0, 0, 0, None, []))
            elif isinstance(t, StructType):
                first = self._members(t.fields)
                self.types.append((_T_STRUCT, t.cls, open_lazy, None, first, len(t.fields), 0, None, []))
            else:
                disc = self._field(t.disc)
                arms = [(value, self._members(arm), len(arm)) for value, arm in t.arms.items()]
                self.types.append((_T_UNION, t.cls, open_lazy, None, 0, 0, disc, t.disc_attr, arms))

    def _members(self, fields: list[tuple[str, Field]]) -> int:
        ids = [self._field(spec) for _, spec in fields]
        first = len(self.members)
        self.members.extend((attr, fid) for (attr, _), fid in zip(fields, ids, strict=True))
        return first

    def _field(self, spec: Field) -> int:
        kind = spec[0]
        type_id = size = fixed = maximum = inner = 0
        if kind == "ref":
            type_id = self.ids[spec[1]]
        elif kind == "opaque":
            size, fixed = spec[1], int(spec[2])
        elif kind == "string":
            size = spec[1]
        elif kind == "optional":
            inner = self._field(spec[1])
        elif kind == "array":
            inner = self._field(spec[1])
            size = _NO_FIXED if spec[2] is None else spec[2]
            maximum = spec[3]
        self.fields.append((_KINDS[kind], type_id, size, fixed, maximum, inner))
        return len(self.fields) - 1


class Codec:
    """decode(name, data) -> (stellar-sdk object with lazy types left encoded, end offset);
    skip(name, data, pos) -> end offset. A lazy value decodes itself fully on first use."""

    def __init__(self, lazy: frozenset[str] = frozenset(), *, compiled: bool | None = None) -> None:
        if compiled is None:
            compiled = _fastxdr is not None and os.environ.get("OBSRVR_PURE_XDR", "") in ("", "0")
        if compiled and _fastxdr is None:
            raise RuntimeError("the compiled XDR decoder was not built")
        self.compiled = compiled
        self.lazy = lazy
        schema = load_schema()

        def opener(name: str):
            """Opens a lazy `name` value one level: nested lazy types stay encoded."""
            return lambda raw: self.inner(name).decode(name, raw)[0]

        if compiled:
            tables = _Tables(lazy, opener)
            ids = self._ids = tables.ids
            scan = None
            if "TransactionMeta" in lazy:  # lazy metas carry their contract events, read in the same walk
                scan = tuple(ids[name] for name in ("TransactionMeta", "ExtensionPoint", "LedgerEntryChanges",
                                                    "SorobanTransactionMetaV2", "DiagnosticEvent", "SCVal",
                                                    "ContractEvent", "TransactionEventStage"))
            self._c = _fastxdr.Decoder(tables.types, tables.fields, tables.members, XdrError, LazyXdr, scan)
        else:
            openers = {name: opener(name) for name in lazy}
            self._py = PyDecoder(lazy, lambda name, data: LazyXdr(schema[name].cls, data, openers[name]))

    def inner(self, name: str) -> Codec:
        """The codec that opens a lazy `name` value: the same laziness below it."""
        return _codec(self.lazy - {name}, self.compiled)

    def decode(self, name: str, data: bytes, pos: int = 0, *, whole: bool = True) -> tuple[object, int, bool]:
        """(value, end offset, canonical). Decoding creates many objects and no reference cycles:
        the cyclic collector is paused meanwhile (it would otherwise rescan the heap again and again)."""
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            if self.compiled:
                return self._c.decode(self._ids[name], data, pos, whole)
            return self._py.decode(name, data, pos, whole=whole)
        finally:
            if paused:
                gc.enable()

    def signed_hashes(self, envelopes: list[bytes], kinds: dict[int, tuple[str, bytes]], prefix: bytes) -> list[bytes]:
        """SHA-256 of prefix + header + body for each union value in `envelopes`: its 4-byte tag
        picks (body type, header) from `kinds`, the body being the bytes after the tag that the
        body type spans. The bytes must have been checked (decoded) already."""
        if self.compiled:
            table = {tag: (self._ids[name], header) for tag, (name, header) in kinds.items()}
            return self._c.signed_hashes(envelopes, table, prefix, hashlib.sha256)
        out = []
        for raw in envelopes:
            name, header = kinds[int.from_bytes(raw[:4], "big", signed=True)]
            end = self._py.skip(name, raw, 4)
            out.append(hashlib.sha256(prefix + header + raw[4:end]).digest())
        return out

    def type_id(self, name: str) -> int:
        """A type's index in the compiled table, for C walkers built on this decoder."""
        return self._ids[name]

    @property
    def compiled_decoder(self) -> object:
        """The C decoder whose tables and walking primitives other C walkers share."""
        if not self.compiled:
            raise RuntimeError("the pure-Python decoder has no compiled form")
        return self._c

    def skip(self, name: str, data: bytes, pos: int = 0) -> int:
        if self.compiled:
            return self._c.skip(self._ids[name], data, pos)
        return self._py.skip(name, data, pos)


@cache
def _codec(lazy: frozenset[str], compiled: bool) -> Codec:
    return Codec(lazy, compiled=compiled)


def codec(lazy: frozenset[str] = frozenset(), *, compiled: bool | None = None) -> Codec:
    """A shared codec; compiled unless the extension is missing or OBSRVR_PURE_XDR=1."""
    if compiled is None:
        compiled = _fastxdr is not None and os.environ.get("OBSRVR_PURE_XDR", "") in ("", "0")
    return _codec(lazy, compiled)
