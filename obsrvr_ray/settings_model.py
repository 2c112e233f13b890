"""How every setting is declared and checked: the backfill's YAML and flags, the Serve config's
`args`, the security settings and every command's flags are pydantic models built on `Settings`.

A model refuses keys it does not declare (a typo never silently falls back to a default), and
every problem is told in one style, naming the key (or the flag, or the environment variable)
the value came under:

    processing.batch_size: expected a whole number >= 1, got 'many'
    output.partiton_by: unknown key (known here: compression, ..., tables); did you mean 'partition_by'?

pydantic's own errors are translated into that style here, at one boundary: a ValidationError
never leaves this module, a ConfigError (exit code 2 on the command line) does.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Self

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from obsrvr_ray.errors import ConfigError


class _Checked(type(BaseModel)):
    """`SomeSettings(...)` raises ConfigError. A metaclass rather than `__init__`: pydantic calls
    an overridden `__init__` for nested models too, which would cut the key's path short."""

    def __call__(cls, *args: Any, **values: Any) -> Any:
        try:
            return super().__call__(*args, **values)
        except ValidationError as exc:
            raise settings_error(exc, cls) from None


class Settings(BaseModel, metaclass=_Checked):
    """A frozen settings model: unknown keys refused, errors raised as one ConfigError."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def check(cls, values: Mapping[str, Any], *, names: Mapping[str, str] | None = None, prefix: str = "",
              where: str = "") -> Self:
        """`values` validated; `names` tells under which name a key was given (a flag, an
        environment variable), `prefix` where the mapping sits in a larger one (`security.`),
        `where` what the values came from (a file)."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise settings_error(exc, cls, names, prefix, where) from None

    @classmethod
    def from_flags(cls, args: argparse.Namespace) -> Self:
        """The flags `add_flags` made for this model, as parsed, checked: a bad or missing value is
        refused naming its flag."""
        values, names = flag_values(args, cls)
        return cls.check(values, names={**{attr: s["flag"] for attr, s in flags_of(cls).items()}, **names})


# --- flags: a field that is also a command-line flag declares it (setting); argparse is built
# from the model (add_flags) and hands back what was given (flag_values), for the model to check.


def setting(default: Any, flag: str, help: str, cli: str = "value", *, key: str | None = None,
            alias: str | None = None) -> Any:
    """A field given by a flag, and with `key` by a settings file too; `...` as the default makes
    it required. `cli`: value; many (repeatable, comma-separated); on / off (a switch setting True /
    False); onoff; positional (`flag` is its name in the usage); positionals (one or more).
    `alias`: an older spelling of the flag, still accepted."""
    return Field(default, description=help, json_schema_extra={"key": key, "flag": flag, "cli": cli, "alias": alias})


def flags_of(model: type[BaseModel]) -> dict[str, dict]:
    """attr -> its flag, cli kind, key and help: the fields of `model` that are flags."""
    return {attr: {**f.json_schema_extra, "help": f.description} for attr, f in model.model_fields.items()
            if isinstance(f.json_schema_extra, dict) and "flag" in f.json_schema_extra}


class DeprecatedAlias(argparse.Action):
    """An older spelling of a flag: it still works, and says the name to use instead."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, use: str, many: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.use, self.many = use, many

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"{parser.prog}: {option_string} is deprecated, use {self.use}", file=sys.stderr)
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest) or []), values] if self.many else values)


_ACTIONS = {"value": "store", "many": "append", "onoff": argparse.BooleanOptionalAction}


def add_flags(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    """Every flag of `model`, taken as given: each defaults to 'not given' (so the model's default,
    or a settings file's value, stands) and argparse checks no value (the model does, in its style)."""
    for attr, s in flags_of(model).items():
        kind = s["cli"]
        if kind in ("positional", "positionals"):
            parser.add_argument(attr, metavar=s["flag"], nargs="+" if kind == "positionals" else None, help=s["help"])
        elif kind in ("on", "off"):
            parser.add_argument(s["flag"], dest=attr, action="store_const", const=kind == "on", default=None,
                                help=s["help"])
        else:
            parser.add_argument(s["flag"], dest=attr, action=_ACTIONS[kind], default=None, help=s["help"])
        if s["alias"]:
            parser.add_argument(s["alias"], dest=attr, action=DeprecatedAlias, use=s["flag"], many=kind == "many",
                                help=argparse.SUPPRESS)


def flag_values(args: argparse.Namespace, model: type[BaseModel]) -> tuple[dict[str, Any], dict[str, str]]:
    """The flags of `model` given on the command line, by attribute, and the flag each came under."""
    given = {attr: (getattr(args, attr, None), s["flag"]) for attr, s in flags_of(model).items()}
    given = {attr: pair for attr, pair in given.items() if pair[0] is not None}
    return {a: v for a, (v, _) in given.items()}, {a: f for a, (_, f) in given.items()}


class _StrictLoader(yaml.SafeLoader):
    """safe_load, but a key given twice is an error, not a silent override."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(path: str) -> dict[str, Any]:
    """A settings file: a mapping (empty for an empty file), read safely (no arbitrary objects)."""
    try:
        raw = yaml.load(Path(path).read_text(), Loader=_StrictLoader)  # a SafeLoader: no arbitrary objects
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the file: expected a mapping of keys, got {type(raw).__name__}")
    return raw


# What pydantic's error types mean, in the project's words; the value follows as ", got <value>".
_EXPECTED = {
    **dict.fromkeys(("bool_parsing", "bool_type"), "expected true or false"),
    **dict.fromkeys(("int_parsing", "int_type", "int_from_float"), "expected a whole number"),
    **dict.fromkeys(("float_parsing", "float_type"), "expected a number"),
    **dict.fromkeys(("model_type", "model_attributes_type", "dict_type"), "expected a mapping of keys"),
    **dict.fromkeys(("tuple_type", "list_type"), "expected a list"),
    "string_type": "expected text",
}
_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}


def settings_error(exc: ValidationError, model: type[BaseModel], names: Mapping[str, str] | None = None,
                   prefix: str = "", where: str = "") -> ConfigError:
    """One ConfigError telling every problem of `exc`, each as `<key>: <problem>`."""
    problems = []
    for err in exc.errors(include_url=False):
        key = ".".join(str(part) for part in err["loc"])
        name = (names or {}).get(key, prefix + key)
        problems.append(f"{name}: {_problem(err, model)}" if name else _problem(err, model))  # a whole-model check
    return ConfigError((f"{where}: " if where else "") + "; ".join(problems))


def _problem(err: Mapping[str, Any], model: type[BaseModel]) -> str:
    kind, given = err["type"], err.get("input")
    if kind in ("value_error", "assertion_error"):
        return str(err["ctx"]["error"])
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        known = _known_keys(model, err["loc"][:-1])
        close = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
        return f"unknown key (known here: {', '.join(known)})" + (f"; did you mean {close[0]!r}?" if close else "")
    if kind in _BOUNDS:
        (bound,) = err["ctx"].values()
        return f"expected a number {_BOUNDS[kind]} {bound}, got {given!r}"
    expected = _EXPECTED.get(kind) or err["msg"][:1].lower() + err["msg"][1:]
    return f"{expected}, got {given!r}"


def _known_keys(model: type[BaseModel], path: tuple) -> list[str]:
    """The keys the model declares at `path` (a nested settings mapping), for an unknown key's hint."""
    for part in path:
        annotation = model.model_fields[str(part)].annotation
        model = next(a for a in (annotation, *typing.get_args(annotation))
                     if isinstance(a, type) and issubclass(a, BaseModel))
    return sorted(f.alias or name for name, f in model.model_fields.items())


# --- value checks shared by the models: each tells the problem (the error names the key) ---------


def _check(convert: Callable[[Any], Any]) -> BeforeValidator:
    return BeforeValidator(convert)


def text(raw: object) -> str:
    if not isinstance(raw, str | int | float) or isinstance(raw, bool) or str(raw) == "":
        raise ValueError(f"expected text, got {raw!r}")
    return str(raw)


def _flag(raw: object) -> bool:
    """true/false in a file; as text (1, yes, on, ...) where only text can be given (environment)."""
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower() if isinstance(raw, str) else None
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def words(raw: object) -> tuple[str, ...]:
    """A list, or text with commas (flags may also repeat)."""
    items = raw if isinstance(raw, list | tuple) else [raw]
    out = []
    for item in items:
        if not isinstance(item, str | int) or isinstance(item, bool):
            raise ValueError(f"expected a list of names, got {raw!r}")
        out.extend(w.strip() for w in str(item).split(",") if w.strip())
    return tuple(out)


def whole(minimum: int) -> BeforeValidator:
    """A whole number of at least `minimum` (text too: flags and environment variables are text)."""

    def check(raw: object) -> int:
        try:
            value = int(raw) if not isinstance(raw, bool | float) else None  # type: ignore[call-overload]
        except (TypeError, ValueError):
            value = None
        if value is None or value < minimum:
            raise ValueError(f"expected a whole number >= {minimum}, got {raw!r}")
        return value

    return _check(check)


def _positive(raw: object) -> float:
    try:
        value = float(raw) if not isinstance(raw, bool) else -1.0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = -1.0
    if value <= 0:
        raise ValueError(f"expected a positive number, got {raw!r}")
    return value


def one_of(options: Collection[str]) -> BeforeValidator:
    def check(raw: object) -> str:
        value = text(raw)
        if value not in options:
            raise ValueError(f"{value!r} is not one of {', '.join(options)}")
        return value

    return _check(check)


def some_of(options: Collection[str]) -> BeforeValidator:
    def check(raw: object) -> tuple[str, ...]:
        values = words(raw)
        unknown = [v for v in values if v not in options]
        if unknown:
            raise ValueError(f"{', '.join(map(repr, unknown))} not among {', '.join(options)}")
        if not values:
            raise ValueError(f"name at least one of {', '.join(options)}")
        return values

    return _check(check)


def checked_text(check: Callable[[str], Any]) -> BeforeValidator:
    """Text that `check` (raising ConfigError) accepts, kept as given: what the command shows back."""

    def convert(raw: object) -> str:
        value = text(raw)
        try:
            check(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    return _check(convert)


def translated(check: Callable[[Any], Any]) -> BeforeValidator:
    """A check of another module that raises ConfigError, made a pydantic check (the key is named
    by the error, so the check's message is the problem alone)."""

    def convert(raw: object) -> Any:
        try:
            return check(raw)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    return _check(convert)


Text = Annotated[str, _check(text)]
Flag = Annotated[bool, _check(_flag)]
Words = Annotated[tuple[str, ...], _check(words)]
Positive = Annotated[float, _check(_positive)]
