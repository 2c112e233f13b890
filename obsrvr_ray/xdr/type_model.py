"""The XDR type table, read out of stellar-sdk's generated decoder.

stellar-sdk generates one class per XDR type with an `unpack` method that follows the XDR
definition step by step. Reading those methods (with `ast`) gives the exact layout the
reference decoder accepts: field order, unions and their arms, optional and array fields,
opaque and string bounds, enum values, and the maximum lengths `__init__` enforces. Our own
decoders are driven by this table, so they accept exactly what the reference accepts.
"""

from __future__ import annotations

import ast
import enum
import inspect
import textwrap
import threading
from dataclasses import dataclass, field
from functools import cache

from stellar_sdk import xdr as X
from stellar_sdk.xdr import constants as XC

# Field encodings ---------------------------------------------------------------------------
# ("ref", TypeName) | ("int",) | ("uint",) | ("hyper",) | ("uhyper",) | ("bool",)
# ("opaque", size, fixed) | ("string", max) | ("optional", field) | ("array", field, fixed, max)
Field = tuple

_PRIMS = {"Integer": ("int",), "UnsignedInteger": ("uint",), "Hyper": ("hyper",),
          "UnsignedHyper": ("uhyper",), "Boolean": ("bool",)}
NO_MAX = 0xFFFFFFFF


@dataclass
class EnumType:
    name: str
    cls: type
    members: dict[int, enum.Enum]


@dataclass
class StructType:
    name: str
    cls: type
    fields: list[tuple[str, Field]]


@dataclass
class UnionType:
    name: str
    cls: type
    disc_attr: str
    disc: Field
    arms: dict[int, list[tuple[str, Field]]]  # discriminant value -> fields (empty list: void)
    attrs: list[str] = field(default_factory=list)  # every arm attribute (None unless active)


XdrType = EnumType | StructType | UnionType


class SchemaError(RuntimeError):
    """stellar-sdk's generated code has a shape this reader does not know."""


def _max_lengths(cls: type) -> dict[str, int]:
    """`_expect_max_length = N; if attr and len(attr) > ...` pairs in the generated __init__."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls.__init__)))
    out: dict[str, int] = {}
    pending = None
    for node in ast.walk(tree.body[0]):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "_expect_max_length":
            pending = _const(node.value)
        elif isinstance(node, ast.If) and pending is not None:
            names = [n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)
                     and n.id not in {"len", "_expect_max_length"}]
            if names:
                out[names[0]] = pending
            pending = None
    return out


def _const(node: ast.expr) -> int:
    """A literal, or a named XDR constant (MAX_SIGNERS...)."""
    return node.value if isinstance(node, ast.Constant) else getattr(XC, node.id)


def _call_field(call: ast.Call) -> Field:
    """One `T.unpack(unpacker, ...)` call -> its field encoding."""
    func = call.func
    if not (isinstance(func, ast.Attribute) and func.attr == "unpack" and isinstance(func.value, ast.Name)):
        raise SchemaError(f"unexpected call {ast.unparse(call)}")
    name = func.value.id
    if name in _PRIMS:
        return _PRIMS[name]
    if name == "Opaque":
        return ("opaque", _const(call.args[1]), call.args[2].value)
    if name == "String":
        return ("string", _const(call.args[1]))
    return ("ref", name)


def _value_field(value: ast.expr) -> Field:
    if isinstance(value, ast.Call):
        return _call_field(value)
    if isinstance(value, ast.IfExp):  # X.unpack(...) if unpacker.unpack_uint() else None
        return ("optional", _call_field(value.body))
    raise SchemaError(f"unexpected value {ast.unparse(value)}")


def _fields(body: list[ast.stmt], max_len: dict[str, int]) -> tuple[list[tuple[str, Field]], ast.Call | None]:
    """Decode steps of a block -> [(local name, field)], and the final `return cls(...)`."""
    out: list[tuple[str, Field]] = []
    fixed_len: int | None = None
    i = 0
    while i < len(body):
        node = body[i]
        i += 1
        if isinstance(node, ast.If) and "depth_limit" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.ImportFrom | ast.Raise):
            continue
        if isinstance(node, ast.Return):
            return out, node.value if isinstance(node.value, ast.Call) else None
        if isinstance(node, ast.Assign):
            target = node.targets[0].id
            value = node.value
            if target == "length":
                fixed_len = value.value if isinstance(value, ast.Constant) else None
                continue
            if target == "_remaining":
                continue
            if isinstance(value, ast.List):  # `name = []`, filled by the loop that follows
                loop = body[i]
                i += 1
                append = loop.body[0].value
                element = _call_field(append.args[0])
                out.append((target, ("array", element, fixed_len, max_len.get(target, NO_MAX))))
                fixed_len = None
                continue
            out.append((target, _value_field(value)))
            continue
        if isinstance(node, ast.If):  # the `_remaining < length` guard before an array
            continue
        raise SchemaError(f"unexpected statement {ast.unparse(node)}")
    return out, None


def _attr_names(cls: type, ret: ast.Call, locals_: list[str]) -> dict[str, str]:
    """Local variable -> attribute name, from `return cls(...)` and the __init__ signature."""
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    mapping = {}
    for pos, arg in enumerate(ret.args):
        mapping[arg.id] = params[pos]
    for kw in ret.keywords:
        mapping[kw.value.id] = kw.arg
    missing = [n for n in locals_ if n not in mapping]
    if missing:
        raise SchemaError(f"{cls.__name__}: fields {missing} not passed to the constructor")
    return mapping


def _unpack_tree(cls: type) -> list[ast.stmt]:
    source = textwrap.dedent(inspect.getsource(cls.unpack.__func__))
    return ast.parse(source).body[0].body


def _read_type(name: str, cls: type) -> XdrType:
    if issubclass(cls, enum.Enum):
        return EnumType(name, cls, {m.value: m for m in cls})
    body = _unpack_tree(cls)
    max_len = _max_lengths(cls)
    branches = [n for n in body if isinstance(n, ast.If) and "depth_limit" not in ast.unparse(n.test)]
    is_union = any(isinstance(n.test, ast.Compare) and isinstance(n.test.comparators[0], ast.Attribute | ast.Constant)
                   and any(isinstance(s, ast.Return) for s in n.body) for n in branches)
    if not is_union:
        fields, ret = _fields(body, max_len)
        if ret is None:
            raise SchemaError(f"{name}: no constructor call")
        names = _attr_names(cls, ret, [f for f, _ in fields])
        return StructType(name, cls, [(names[f], spec) for f, spec in fields])
    disc_stmt = next(n for n in body if isinstance(n, ast.Assign))
    disc_local = disc_stmt.targets[0].id
    disc = _value_field(disc_stmt.value)
    arms: dict[int, list[tuple[str, Field]]] = {}
    attrs: list[str] = []
    disc_attr = disc_local
    for branch in branches:
        value = branch.test.comparators[0]
        if isinstance(value, ast.Constant):
            key = value.value
        else:
            enum_cls = getattr(X, value.value.id)
            key = getattr(enum_cls, value.attr).value
        fields, ret = _fields(branch.body, max_len)
        names = _attr_names(cls, ret, [disc_local] + [f for f, _ in fields])
        disc_attr = names[disc_local]
        arm = [(names[f], spec) for f, spec in fields]
        arms[key] = arm
        for attr, _ in arm:
            if attr not in attrs:
                attrs.append(attr)
    return UnionType(name, cls, disc_attr, disc, arms, attrs)


_BUILDING = threading.Lock()


def load_schema() -> dict[str, XdrType]:
    """Every XDR type stellar-sdk defines, by class name. Built once per process, under a lock:
    a lake read decodes in its prefetch threads, and `ast.parse` run by several threads at once
    fails in CPython 3.11 ("AST constructor recursion depth mismatch")."""
    with _BUILDING:
        return _build_schema()


@cache
def _build_schema() -> dict[str, XdrType]:
    out: dict[str, XdrType] = {}
    for name in X.__all__ if hasattr(X, "__all__") else dir(X):
        cls = getattr(X, name, None)
        if not isinstance(cls, type) or not hasattr(cls, "unpack") or cls.__module__.endswith(".base"):
            continue
        if cls.__module__.split(".")[-1] in ("constants",):
            continue
        out[name] = _read_type(name, cls)
    return out
