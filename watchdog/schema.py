"""Frozen, validated configuration models: the small schema language ``watchdog.config`` is
written in.

Why not a schema library: pydantic cost the daemon about 10 MB of its 100 MB (its compiled
core and the validators built for each model), on a Pi Zero 2 W that shares 512 MB with
OctoPrint (docs/decisions/config-schema.md). The config needs little: typed fields with
bounds, nested sections, lists, fixed-length tuples, literals, enums, secrets and a few
checks per field or section. This module does exactly that, and says what is wrong in the
words of someone editing the YAML file, with the key path.

A model is a class with annotated fields, optionally ``= Field(default, ...)``::

    class CameraConfig(Model):
        interval_s: float = Field(10.0, ge=0.0, description="seconds between frames")

        @field_validator("interval_s")
        @classmethod
        def _check(cls, v: float) -> float: ...

Instances are immutable and compare by value. Unknown keys are refused. Values are converted
as a YAML user expects (``"5"`` for a whole number, ``1`` for true) and nothing else.
"""

from __future__ import annotations

import difflib
import enum
import math
import operator
import re
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

Loc = tuple[str | int, ...]
T = TypeVar("T")
M = TypeVar("M", bound="Model")

_MISSING: Any = type("_Missing", (), {"__repr__": lambda self: "<required>"})()
_TRUE = {"true", "yes", "on", "y", "t", "1"}
_FALSE = {"false", "no", "off", "n", "f", "0"}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where (key path) and what, in a user's words."""

    loc: Loc
    message: str

    def where(self) -> str:
        return ".".join(str(p) for p in self.loc) or "(top level)"


class SchemaError(ValueError):
    """Input that does not fit a model; ``problems`` lists every key that is wrong."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(self.describe())

    def describe(self, prefix: str = "") -> str:
        """Every problem on one line, each key path after ``prefix`` (the file or section)."""
        return "; ".join(dict.fromkeys(f"{prefix}{p.where()}: {p.message}" for p in self.problems))


class _Invalid(Exception):
    """A value that cannot be converted (internal: becomes a Problem at its key path)."""


class SecretStr:
    """A secret text: shown as ``**********`` everywhere, read with ``get_secret_value()``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "SecretStr('**********')"

    def __str__(self) -> str:
        return "**********"


class FieldInfo:
    """A field's default, bounds and description (``Field(...)`` makes one)."""

    def __init__(
        self,
        default: Any = _MISSING,
        *,
        default_factory: Callable[[], Any] | None = None,
        description: str = "",
        ge: float | None = None,
        gt: float | None = None,
        le: float | None = None,
        lt: float | None = None,
        min_length: int | None = None,
        max_length: int | None = None,
    ) -> None:
        self.default = _MISSING if default is ... else default
        self.default_factory = default_factory
        self.description = description
        self.ge, self.gt, self.le, self.lt = ge, gt, le, lt
        self.min_length, self.max_length = min_length, max_length
        self.annotation: Any = None  # set when the model class is made

    def is_required(self) -> bool:
        return self.default is _MISSING and self.default_factory is None

    def make_default(self) -> Any:
        return self.default_factory() if self.default_factory is not None else self.default

    def bounds(self) -> Iterator[tuple[str, float]]:
        """The numeric bounds as (symbol, value), in the order ≥, >, ≤, <."""
        for symbol, attr, _, _ in _BOUNDS:
            if (value := getattr(self, attr)) is not None:
                yield symbol, value

    def check(self, value: Any) -> None:
        """Raise _Invalid when ``value`` is outside this field's bounds or length."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            for _, attr, words, holds in _BOUNDS:
                bound = getattr(self, attr)
                if bound is not None and not holds(value, bound):
                    raise _Invalid(f"must be {words} {_number(bound)}")
        if self.min_length is not None and len(value) < self.min_length:
            items = "item" if self.min_length == 1 else "items"
            raise _Invalid(f"needs at least {self.min_length} {items}, got {len(value)}")
        if self.max_length is not None and len(value) > self.max_length:
            items = "item" if self.max_length == 1 else "items"
            raise _Invalid(f"takes at most {self.max_length} {items}, got {len(value)}")


# (symbol in the docs, FieldInfo attribute, words in an error, test the value must pass)
_BOUNDS: tuple[tuple[str, str, str, Callable[[Any, Any], bool]], ...] = (
    ("≥", "ge", "greater than or equal to", operator.ge),
    (">", "gt", "greater than", operator.gt),
    ("≤", "le", "less than or equal to", operator.le),
    ("<", "lt", "less than", operator.lt),
)


def _number(value: float) -> str:
    """A bound as a user writes it: 0 rather than 0.0."""
    return str(int(value)) if float(value).is_integer() else str(value)


def Field(default: Any = _MISSING, **kwargs: Any) -> Any:  # noqa: N802 (reads as a declaration)
    """A field's default (``...``: required), ``default_factory``, bounds and description."""
    return FieldInfo(default, **kwargs)


def field_validator(*names: str) -> Callable[[T], T]:
    """Mark a classmethod ``(cls, value) -> value`` that checks fields ``names`` once their
    type is right; a ValueError's text is the problem reported at the field's key."""

    def mark(fn: T) -> T:
        target = fn.__func__ if isinstance(fn, classmethod) else fn
        setattr(target, "__validates__", names)  # noqa: B010 (a function attribute)
        return fn

    return mark


def model_validator(*, mode: str = "after") -> Callable[[T], T]:
    """Mark a method ``(self) -> self`` that checks the whole section once every field is
    valid; a ValueError's text is the problem reported at the section's key."""
    if mode != "after":
        raise ValueError("only mode='after' is supported")

    def mark(fn: T) -> T:
        setattr(fn, "__validates_model__", True)  # noqa: B010 (a function attribute)
        return fn

    return mark


# where a key written with its value ends: ``password:x`` (no space after the ':', inside
# braces), ``api_key=x``, ``password x``
_KEY_END = re.compile(r"[:=\s]")


def _unknown(loc: Loc, key: Any, known: typing.Iterable[str] = ()) -> Problem:
    """A key the section does not have. One holding a ':' or '=', or a secret's name and a
    space, is a key written with its value (``{password:hunter2}``, ``api_key=hunter2``,
    ``password hunter2``): what follows may be a secret, not shown. A key of two words
    (``judge start``) is shown whole. A key close to one of ``known`` (``interval`` for
    ``interval_s``) is said to be perhaps that one."""
    from watchdog.redact import says_secret  # the schema itself needs nothing of it

    end = _KEY_END.search(key.strip()) if isinstance(key, str) else None
    if end is not None and (end.group() in ":=" or says_secret(key.strip()[: end.start()])):
        name = f"{key.strip()[: end.start()]}{end.group().strip() or ' '}***"
        return Problem(
            (*loc, name),
            "unknown key (a key and its value are written 'key: value', a space after the ':')",
        )
    close = difflib.get_close_matches(key, list(known), n=1) if isinstance(key, str) else []
    return Problem(
        (*loc, key), f"unknown key (did you mean {close[0]}?)" if close else "unknown key"
    )


def kind_of(value: Any) -> str:
    """What a YAML value is, in a user's words (never the value: it may be a secret)."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a group of keys"
    return "nothing" if value is None else type(value).__name__


# --------------------------------------------------------------------------- models


def _masked(value: Any) -> Any:
    from watchdog.redact import secret_filter  # the schema itself needs nothing of it

    return secret_filter.mask(value) if isinstance(value, str) else value


class Model:
    """Base of the config sections: frozen, compared by value, unknown keys refused."""

    model_fields: typing.ClassVar[dict[str, FieldInfo]] = {}
    _field_checks: typing.ClassVar[dict[str, list[Callable[..., Any]]]] = {}
    _model_checks: typing.ClassVar[list[Callable[..., Any]]] = []
    _given: frozenset[str] = frozenset()  # the keys the data set (the rest are defaults)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        hints = typing.get_type_hints(cls, include_extras=True)
        fields: dict[str, FieldInfo] = {}
        for base in cls.__mro__[1:]:
            if issubclass(base, Model) and base.model_fields:
                raise TypeError(f"{cls.__name__}: a config model does not inherit fields")
        for name, hint in hints.items():
            if name.startswith("_") or typing.get_origin(hint) is typing.ClassVar:
                continue
            declared = cls.__dict__.get(name, _MISSING)
            info = declared if isinstance(declared, FieldInfo) else FieldInfo(declared)
            if isinstance(info.default, list | dict | set):
                raise TypeError(f"{cls.__name__}.{name}: a list or mapping needs default_factory")
            info.annotation = hint
            fields[name] = info
        cls.model_fields = fields
        cls._field_checks = {}
        cls._model_checks = []
        for attr in cls.__dict__.values():
            fn = attr.__func__ if isinstance(attr, classmethod) else attr
            for name in getattr(fn, "__validates__", ()):
                if name not in fields:
                    raise TypeError(f"{cls.__name__}: validator for unknown field {name!r}")
                cls._field_checks.setdefault(name, []).append(fn)
            if getattr(fn, "__validates_model__", False):
                cls._model_checks.append(fn)

    def __init__(self, **data: Any) -> None:
        problems: list[Problem] = []
        self._fill(data, (), problems)
        if problems:
            raise SchemaError(problems)

    @classmethod
    def model_validate(cls: type[M], data: Any) -> M:
        """A model from plain data (YAML); SchemaError listing every problem."""
        problems: list[Problem] = []
        obj = _validate(cls, data, (), problems)
        if problems:
            raise SchemaError(problems)
        return typing.cast(M, obj)

    def _fill(self, data: dict[Any, Any], loc: Loc, problems: list[Problem]) -> bool:
        """Validate ``data`` into this (new) instance; False when a problem was added."""
        before = len(problems)
        for key in data:
            if key not in self.model_fields:
                problems.append(_unknown(loc, key, self.model_fields))
        for name, info in self.model_fields.items():
            if name in data:
                value = _validate(info.annotation, data[name], (*loc, name), problems, info)
                if value is not _MISSING:
                    value = self._check_field(name, value, (*loc, name), problems)
            elif info.is_required():
                problems.append(Problem((*loc, name), "required key is missing"))
                value = _MISSING
            else:
                value = info.make_default()
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_given", frozenset(n for n in self.model_fields if n in data))
        if len(problems) == before:
            for check in self._model_checks:
                try:
                    check(self)
                except ValueError as exc:
                    problems.append(Problem(loc, str(exc)))
                    break
        return len(problems) == before

    def _check_field(self, name: str, value: Any, loc: Loc, problems: list[Problem]) -> Any:
        for check in self._field_checks.get(name, ()):
            try:
                value = check(type(self), value)
            except ValueError as exc:
                problems.append(Problem(loc, str(exc)))
                return _MISSING
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only: use model_copy(update=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.model_fields)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Model)
            and type(other) is type(self)
            and other._values() == self._values()
        )

    def __hash__(self) -> int:
        return hash((type(self), _hashable(self._values())))

    def __repr__(self) -> str:
        """Text values with secrets masked (a camera URL's password, a known secret): a debug
        line or a traceback quoting a config object must not show them."""
        inner = ", ".join(f"{name}={_masked(getattr(self, name))!r}" for name in self.model_fields)
        return f"{type(self).__name__}({inner})"

    def model_copy(self: M, *, update: dict[str, Any] | None = None) -> M:
        """A copy with some fields replaced (not validated again: give it valid values)."""
        unknown = set(update or {}) - set(self.model_fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {', '.join(sorted(unknown))}")
        copy = object.__new__(type(self))
        for name in self.model_fields:
            object.__setattr__(copy, name, (update or {}).get(name, getattr(self, name)))
        object.__setattr__(copy, "_given", self._given | frozenset(update or {}))
        return copy

    def given(self, name: str) -> bool:
        """Whether the data set ``name`` (a key in the config file), not its default: a
        setting left out may deserve a word (a camera that is then the first USB one). Only
        for a model read from a file: ``model_copy`` counts every key it is given as set."""
        return name in self._given

    def model_dump(self) -> dict[str, Any]:
        """Plain JSON-able data: paths as text, secrets as ``**********``, tuples as lists."""
        return {name: _dump(getattr(self, name)) for name in self.model_fields}


def _dump(value: Any) -> Any:
    if isinstance(value, Model):
        return value.model_dump()
    if isinstance(value, list | tuple):
        return [_dump(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path | SecretStr):
        return str(value)
    return value


def _hashable(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    return value


# --------------------------------------------------------------------------- values


def _validate(
    hint: Any, value: Any, loc: Loc, problems: list[Problem], info: FieldInfo | None = None
) -> Any:
    """``value`` converted to ``hint``; on failure a Problem is added and _MISSING returned."""
    before = len(problems)
    out = _MISSING
    try:
        out = _convert(hint, value, loc, problems)
        if len(problems) == before and info is not None:
            info.check(out)
    except _Invalid as exc:
        problems.append(Problem(loc, str(exc)))
    return out if len(problems) == before else _MISSING


def _convert(hint: Any, value: Any, loc: Loc, problems: list[Problem]) -> Any:
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        inner, *metadata = typing.get_args(hint)
        out = _convert(inner, value, loc, problems)
        for meta in metadata:
            if isinstance(meta, FieldInfo) and out is not _MISSING:
                meta.check(out)
        return out
    if origin in (typing.Union, types.UnionType):
        return _union(typing.get_args(hint), value, loc, problems)
    if origin is typing.Literal:
        return _literal(typing.get_args(hint), value)
    if origin is list:
        return _list(typing.get_args(hint)[0], value, loc, problems)
    if origin is tuple:
        return _tuple(typing.get_args(hint), value, loc, problems)
    if isinstance(hint, type) and issubclass(hint, Model):
        return _model(hint, value, loc, problems)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _literal(tuple(hint), value, hint)
    convert = _SCALARS.get(hint)
    if convert is None:
        raise TypeError(f"schema: no rule for the type {hint!r}")
    return convert(value)


def _model(cls: type[Model], value: Any, loc: Loc, problems: list[Problem]) -> Any:
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise _Invalid(
            f"must be a group of keys indented below it (key: value lines), got {kind_of(value)}"
        )
    obj = object.__new__(cls)
    return obj if obj._fill(value, loc, problems) else _MISSING


def _union(options: tuple[Any, ...], value: Any, loc: Loc, problems: list[Problem]) -> Any:
    if value is None and type(None) in options:
        return None
    options = tuple(o for o in options if o is not type(None))
    if len(options) == 1:
        return _convert(options[0], value, loc, problems)
    for option in options:  # a value of exactly one of the types is taken as it is
        if type(value) is option:
            return value
    errors = []
    for option in options:
        try:
            return _SCALARS[option](value)
        except _Invalid as exc:
            errors.append(str(exc).split(", got ")[0].removeprefix("must be "))
    raise _Invalid(f"must be {' or '.join(errors)}, got {kind_of(value)}")


def _literal(choices: tuple[Any, ...], value: Any, enum_type: type[enum.Enum] | None = None) -> Any:
    values = [c.value if isinstance(c, enum.Enum) else c for c in choices]
    if isinstance(value, str | int) and not isinstance(value, bool) and value in values:
        return enum_type(value) if enum_type else value
    names = [repr(v) for v in values]
    listed = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
    raise _Invalid(f"must be {listed}")


def _list(item: Any, value: Any, loc: Loc, problems: list[Problem]) -> Any:
    if not isinstance(value, list | tuple):
        raise _Invalid(f"must be a list (one '- ' item per line, or [a, b]), got {kind_of(value)}")
    before = len(problems)
    out = [_validate(item, v, (*loc, i), problems) for i, v in enumerate(value)]
    return out if len(problems) == before else _MISSING


def _tuple(items: tuple[Any, ...], value: Any, loc: Loc, problems: list[Problem]) -> Any:
    what = "numbers" if all(_bare(i) is float for i in items) else "values"
    if not isinstance(value, list | tuple):
        raise _Invalid(f"must be a list of {len(items)} {what}, got {kind_of(value)}")
    if len(value) != len(items):
        raise _Invalid(f"must be a list of {len(items)} {what}, not {len(value)}")
    before = len(problems)
    out = tuple(
        _validate(h, v, (*loc, i), problems)
        for i, (h, v) in enumerate(zip(items, value, strict=True))
    )
    return out if len(problems) == before else _MISSING


def _bare(hint: Any) -> Any:
    return typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _Invalid(f"must be true or false, got {kind_of(value)}")


def _to_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _Invalid(f"must be a whole number, got {kind_of(value)}")


def _to_float(value: Any) -> float:
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # a whole number with hundreds of digits
            raise _Invalid("must be a finite number") from None
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None:
        raise _Invalid(f"must be a number, got {kind_of(value)}")
    if not math.isfinite(number):
        raise _Invalid("must be a finite number")
    return number


def _to_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise _Invalid(f"must be text, got {kind_of(value)}")


def _to_path(value: Any) -> Path:
    if isinstance(value, Path):
        return value
    if isinstance(value, str):
        return Path(value)
    raise _Invalid(f"must be a path (text), got {kind_of(value)}")


def _to_secret(value: Any) -> SecretStr:
    if isinstance(value, SecretStr):
        return value
    return SecretStr(_to_str(value))


_SCALARS: dict[Any, Callable[[Any], Any]] = {
    bool: _to_bool,
    int: _to_int,
    float: _to_float,
    str: _to_str,
    Path: _to_path,
    SecretStr: _to_secret,
}
