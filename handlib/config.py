"""Stage configs: dataclasses built from flat parameter dicts and validated.

Papermill only warns about unknown parameters; ``from_params`` raises a
``ConfigError`` that names the field, the value and what is allowed. Constraints
sit in field metadata: ``choices`` (a tuple) or ``range`` ((lo, hi), inclusive;
``None`` for an open end).

    @dataclass(frozen=True)
    class MyConfig(StageConfig):
        lr: float = field(default=1e-3, metadata={"range": (0.0, 1.0)})
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union


class ConfigError(ValueError):
    """A bad configuration value; the message names the field."""


def _type_ok(value: Any, tp: Any) -> tuple[bool, Any]:
    """Check (and gently coerce) ``value`` against annotation ``tp``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True, value
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, v = _type_ok(value, arg)
            if ok:
                return True, v
        return False, value
    if tp is type(None):
        return value is None, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:  # ints are fine where floats are expected
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if tp is str:
        return isinstance(value, str), value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False, value
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],) * len(value)
        if len(args) != len(value):
            return False, value
        out = []
        for v, a in zip(value, args):
            ok, cv = _type_ok(v, a)
            if not ok:
                return False, value
            out.append(cv)
        return True, tuple(out)
    if origin is typing.Literal:
        return value in typing.get_args(tp), value
    return isinstance(value, tp), value


def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


@dataclass(frozen=True)
class StageConfig:
    """Base class: subclasses are frozen dataclasses whose fields are parameters."""

    stage: ClassVar[str] = "stage"
    # former field names still found in older records: old name -> field (``from_record``)
    renamed: ClassVar[dict[str, str]] = {}
    # values of changed defaults that older records were made with, for keys they lack
    legacy: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            ok, coerced = _type_ok(value, hints[f.name])
            if not ok:
                raise ConfigError(
                    f"{type(self).__name__}.{f.name}: {value!r} has type "
                    f"{type(value).__name__}; expected {_describe(hints[f.name])}"
                )
            if coerced is not value:
                object.__setattr__(self, f.name, coerced)
            choices = f.metadata.get("choices")
            if choices is not None and coerced not in choices:
                raise ConfigError(
                    f"{type(self).__name__}.{f.name}: {value!r} is not allowed; "
                    f"choose one of {list(choices)}"
                )
            rng = f.metadata.get("range")
            if rng is not None and coerced is not None:
                lo, hi = rng
                vals = coerced if isinstance(coerced, tuple) else (coerced,)
                for v in vals:
                    if (lo is not None and v < lo) or (hi is not None and v > hi):
                        raise ConfigError(
                            f"{type(self).__name__}.{f.name}: {value!r} is out of range; "
                            f"allowed [{lo}, {hi}]"
                        )
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; subclasses override and raise ConfigError."""

    @classmethod
    def from_params(cls, params: dict[str, Any] | None = None, **kwargs: Any):
        """Build from a flat dict (papermill parameters); unknown keys raise."""
        params = {**(params or {}), **kwargs}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - names)
        if unknown:
            raise ConfigError(
                f"{cls.__name__}: unknown parameter(s) {unknown}; allowed: {sorted(names)}"
            )
        return cls(**params)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_namespace(cls, ns: dict[str, Any], defaults: dict[str, Any] | None = None):
        """Build from a notebook's globals: every name that is a field of ``cls`` (the
        ``parameters`` cell's and any papermill injected), ``defaults`` where a field is absent.
        A notebook names each parameter once: ``cfg = MyConfig.from_namespace(globals())``."""
        names = cls.field_names()
        return cls.from_params({**(defaults or {}), **{k: ns[k] for k in names if k in ns}})

    @classmethod
    def record_params(cls, config: dict[str, Any]) -> dict[str, Any]:
        """The parameters of a record's ``config.json`` (its ``config`` block or the flat dict):
        former names renamed (``renamed``), keys that are not fields dropped, and for changed
        defaults it lacks, the values it was made with (``legacy``)."""
        config = config.get("config", config)
        names = cls.field_names()
        params = {cls.renamed.get(k, k): v for k, v in config.items()}
        return {**cls.legacy, **{k: v for k, v in params.items() if k in names}}

    @classmethod
    def from_record(cls, config: dict[str, Any]):
        """The config a record was made with (see ``record_params``)."""
        return cls.from_params(cls.record_params(config))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)


def defaults(**values: Any):
    """Class decorator (under ``@dataclass``): inherited fields with this class's defaults. A
    stage config inherits a component's fields (declared, validated and documented once there)
    and states only the defaults of its own that differ:

        @dataclass(frozen=True)
        @defaults(steps=400, lr=1e-4)
        class MyStage(LoopParams, StageConfig): ...
    """
    def deco(cls: type) -> type:
        own = cls.__dict__.get("__annotations__")
        if own is None:
            own = {}
            cls.__annotations__ = own
        for name, value in values.items():
            base = next((b.__dataclass_fields__[name] for b in cls.__mro__[1:]
                         if name in getattr(b, "__dataclass_fields__", {})), None)
            if base is None:
                raise TypeError(f"{cls.__name__}: no inherited field {name!r} to give a default")
            own[name] = base.type
            setattr(cls, name, field(default=value, metadata=base.metadata))
        return cls
    return deco


def param(default: Any, *, choices: tuple | None = None, range: tuple | None = None, help: str = ""):
    """A config field with validation metadata."""
    md: dict[str, Any] = {"help": help}
    if choices is not None:
        md["choices"] = tuple(choices)
    if range is not None:
        md["range"] = range
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: default, metadata=md)
    return field(default=default, metadata=md)
