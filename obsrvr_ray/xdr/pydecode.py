"""The pure-Python form of our XDR decoder: one closure per type, built from the schema.

It accepts exactly what stellar-sdk's decoder accepts (same bounds, same leniencies: any
non-zero optional flag or bool, unchecked padding) and builds the same stellar-sdk objects,
except that types named in `lazy` become LazyXdr values decoded on first use. The compiled
form (obsrvr_ray.xdr._fastxdr) follows the same table and must give equal results.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from obsrvr_ray.xdr.type_model import EnumType, Field, StructType, UnionType, XdrType, load_schema

MAX_DEPTH = 512
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")

Reader = Callable[[bytes, int, int], tuple[object, int]]


class XdrError(ValueError):
    """Bytes the XDR definition (as stellar-sdk reads it) does not accept."""


def _eof(buf: bytes, pos: int, need: int) -> None:
    if pos + need > len(buf):
        raise XdrError(f"unexpected end of data at byte {pos} (need {need}, have {len(buf) - pos})")


class PyDecoder:
    def __init__(self, lazy: frozenset[str] = frozenset(),
                 lazy_factory: Callable[[str, bytes], object] | None = None) -> None:
        self.schema = load_schema()
        self.lazy = lazy
        self.lazy_factory = lazy_factory
        self._readers: dict[str, Reader] = {}
        self._noncanonical = False
        self._skippers: dict[str, Reader] = {}
        install_union_defaults(self.schema)

    # public ------------------------------------------------------------------------------
    def decode(self, name: str, buf: bytes, pos: int = 0, *, whole: bool = True) -> tuple[object, int, bool]:
        """(value, end offset, canonical): canonical is False when the bytes use an accepted but
        non-canonical encoding (an optional flag or bool above 1, non-zero padding)."""
        self._noncanonical = False
        obj, end = self.reader(name, materialize=True)(buf, pos, MAX_DEPTH)
        if whole and end != len(buf):
            raise XdrError(f"{len(buf) - end} trailing bytes after {name}")
        return obj, end, not self._noncanonical

    def skip(self, name: str, buf: bytes, pos: int = 0) -> int:
        """End offset of the value of type `name` at `pos`, checked but not built."""
        return self.reader(name, materialize=False)(buf, pos, MAX_DEPTH)[1]

    # construction --------------------------------------------------------------------------
    def reader(self, name: str, *, materialize: bool) -> Reader:
        cache = self._readers if materialize else self._skippers
        if name not in cache:
            def forward(buf: bytes, pos: int, depth: int) -> tuple[object, int]:
                return cache[name](buf, pos, depth)  # recursion: looked up when called, once built
            cache[name] = forward
            cache[name] = self._build(self.schema[name], materialize)
        return cache[name]

    def _build(self, t: XdrType, materialize: bool) -> Reader:
        if isinstance(t, EnumType):
            return _enum_reader(t)
        if materialize and t.name in self.lazy:
            return self._lazy_reader(t)
        if isinstance(t, StructType):
            return self._struct_reader(t, materialize)
        return self._union_reader(t, materialize)

    def _lazy_reader(self, t: XdrType) -> Reader:
        skip = self.reader(t.name, materialize=False)
        factory = self.lazy_factory

        def read_lazy(buf: bytes, pos: int, depth: int):
            if depth <= 0:
                raise XdrError("maximum decoding depth reached")
            end = skip(buf, pos, depth)[1]
            return factory(t.name, buf[pos:end]), end
        return read_lazy

    def _struct_reader(self, t: StructType, materialize: bool) -> Reader:
        cls = t.cls
        fields = [(attr, self._field(spec, materialize)) for attr, spec in t.fields]

        def read_struct(buf: bytes, pos: int, depth: int):
            if depth <= 0:
                raise XdrError("maximum decoding depth reached")
            values = {}
            for attr, read in fields:
                values[attr], pos = read(buf, pos, depth - 1)
            return _instance(cls, values, materialize), pos
        return read_struct

    def _union_reader(self, t: UnionType, materialize: bool) -> Reader:
        cls, disc_attr = t.cls, t.disc_attr
        read_disc = self._field(t.disc, True)
        arms = {key: [(attr, self._field(spec, materialize)) for attr, spec in arm] for key, arm in t.arms.items()}

        def read_union(buf: bytes, pos: int, depth: int):
            if depth <= 0:
                raise XdrError("maximum decoding depth reached")
            disc, pos = read_disc(buf, pos, depth - 1)
            arm = arms.get(disc if isinstance(disc, int) else disc.value)
            if arm is None:
                raise XdrError(f"invalid {t.name} discriminant {disc}")
            values = {disc_attr: disc}
            for attr, read in arm:
                values[attr], pos = read(buf, pos, depth - 1)
            return _instance(cls, values, materialize), pos
        return read_union

    def _field(self, spec: Field, materialize: bool) -> Reader:
        """One reader per field kind: the schema's kinds are dispatched here, each built by its own method."""
        kind = spec[0]
        if kind == "ref":
            return self._ref_reader(spec[1], materialize)
        if kind in ("int", "uint", "bool"):
            return self._word_reader(kind)
        if kind in ("hyper", "uhyper"):
            return _hyper_reader(kind)
        if kind in ("opaque", "string"):
            return self._bytes_reader(kind, spec[1], spec[2] if kind == "opaque" else False)
        if kind == "optional":
            return self._optional_reader(self._field(spec[1], materialize))
        if kind == "array":
            return _array_reader(self._field(spec[1], materialize), spec[2], spec[3])
        raise ValueError(f"unknown field kind {kind}")

    def _ref_reader(self, name: str, materialize: bool) -> Reader:
        def read_ref(buf: bytes, pos: int, depth: int):
            return self.reader(name, materialize=materialize)(buf, pos, depth)  # built on first use
        return read_ref

    def _word_reader(self, kind: str) -> Reader:
        fmt = _U32 if kind == "uint" else _I32

        def read_word(buf: bytes, pos: int, depth: int):
            _eof(buf, pos, 4)
            value = fmt.unpack_from(buf, pos)[0]
            if kind == "bool":
                if value not in (0, 1):
                    self._noncanonical = True
                return bool(value), pos + 4
            return value, pos + 4
        return read_word

    def _bytes_reader(self, kind: str, size: int, fixed: bool) -> Reader:
        def read_bytes(buf: bytes, pos: int, depth: int):
            n = size
            if not fixed:
                _eof(buf, pos, 4)
                n = _U32.unpack_from(buf, pos)[0]
                pos += 4
                if n > size:
                    raise XdrError(f"{kind} of {n} bytes exceeds its maximum {size}")
            padded = (n + 3) // 4 * 4
            _eof(buf, pos, padded)
            if any(buf[pos + n:pos + padded]):
                self._noncanonical = True
            return buf[pos:pos + n], pos + padded
        return read_bytes

    def _optional_reader(self, inner: Reader) -> Reader:
        def read_optional(buf: bytes, pos: int, depth: int):
            _eof(buf, pos, 4)
            flag = _U32.unpack_from(buf, pos)[0]
            if flag > 1:
                self._noncanonical = True
            if flag:
                return inner(buf, pos + 4, depth)
            return None, pos + 4
        return read_optional


def _instance(cls: type, values: dict[str, object], materialize: bool) -> object:
    """The stellar-sdk object with these attributes, built without its constructor (None when only skipping)."""
    if not materialize:
        return None
    obj = cls.__new__(cls)
    obj.__dict__.update(values)
    return obj


def _enum_reader(t: EnumType) -> Reader:
    members = t.members

    def read_enum(buf: bytes, pos: int, depth: int):
        _eof(buf, pos, 4)
        value = _I32.unpack_from(buf, pos)[0]
        member = members.get(value)
        if member is None:
            raise XdrError(f"{value} is not a valid {t.name}")
        return member, pos + 4
    return read_enum


def _hyper_reader(kind: str) -> Reader:
    fmt = _U64 if kind == "uhyper" else _I64

    def read_hyper(buf: bytes, pos: int, depth: int):
        _eof(buf, pos, 8)
        return fmt.unpack_from(buf, pos)[0], pos + 8
    return read_hyper


def _array_reader(inner: Reader, fixed: int | None, maximum: int) -> Reader:
    def read_array(buf: bytes, pos: int, depth: int):
        if fixed is not None:
            n = fixed
        else:
            _eof(buf, pos, 4)
            n = _U32.unpack_from(buf, pos)[0]
            pos += 4
            if len(buf) - pos < n:
                raise XdrError(f"array length {n} exceeds remaining input length {len(buf) - pos}")
        items = []
        for _ in range(n):
            item, pos = inner(buf, pos, depth)
            items.append(item)
        if n > maximum:
            raise XdrError(f"array of {n} exceeds its maximum {maximum}")
        return items, pos
    return read_array


_DEFAULTS_INSTALLED: set[int] = set()


def install_union_defaults(schema: dict[str, XdrType]) -> None:
    """Give each union class a None class attribute per arm, so a decoded union needs only its
    active arm set (stellar-sdk's own constructor sets every arm; reads and == agree)."""
    if id(schema) in _DEFAULTS_INSTALLED:
        return
    for t in schema.values():
        if isinstance(t, UnionType):
            for attr in t.attrs:
                if attr not in t.cls.__dict__:
                    setattr(t.cls, attr, None)
    _DEFAULTS_INSTALLED.add(id(schema))
