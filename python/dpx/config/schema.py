"""Typed config parsing: dataclasses in, errors that name the key path out.

Each config section is a dataclass; its fields and defaults are the single statement of the
input format. `parse(cls, data, path)` checks every key (unknown keys are errors, keys
starting with "_" are comments), every type (int is accepted for float, bool is never an int),
resolves aliases (a class attribute ALIASES = {"alias": "field"}) and then calls the
dataclass's `check(path)` hook for value constraints.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Annotated, Any, Union


class ConfigError(ValueError):
    """A bad input: the message starts with the key path (e.g. model/descriptor/rcut)."""


def fail(path: str, msg: str) -> typing.NoReturn:
    raise ConfigError(f"{path}: {msg}")


def at_least(path: str, section, keys, low) -> None:
    """Each of section's keys (attributes) is >= low."""
    for key in keys:
        if getattr(section, key) < low:
            fail(f"{path}/{key}", f"must be >= {low}, got {getattr(section, key)}")


@dataclasses.dataclass(frozen=True)
class KeyedBy:
    """Marks a union of config classes chosen by the value of `key` in the input object:
    each class lists the values it answers to in TYPES; a missing key means the first."""
    key: str = "type"


def keyed(*classes):
    """The type hint of a section that is one of `classes`, chosen by its "type" key."""
    return Annotated[Union[classes], KeyedBy()]


def _keyed_class(tp, v, path: str):
    """The config class of a keyed union that the input object v names."""
    inner, marker = typing.get_args(tp)[0], typing.get_args(tp)[1]
    classes = typing.get_args(inner) if typing.get_origin(inner) is Union else (inner,)
    if not isinstance(v, dict):
        fail(path, f"expected an object, got {v!r}")
    name = v.get(marker.key, classes[0].TYPES[0])
    for cls in classes:
        if name in cls.TYPES:
            return cls
    known = ", ".join(cls.TYPES[0] + (f" (alias {', '.join(cls.TYPES[1:])})" if cls.TYPES[1:]
                                      else "") for cls in classes)
    fail(f"{path}/{marker.key}", f"dpx implements {known}; got '{name}'")


def _type_name(tp) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return "object"
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"object of {_type_name(typing.get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return "object"
    return {int: "integer", float: "number", str: "string", bool: "boolean"}.get(tp, str(tp))


def _same_kind(tp, v) -> bool:
    """v is an object or list of the kind tp (a member of a union) takes: an error inside it
    (e.g. model_prob/water: NaN) says more than "expected <the union>"."""
    if isinstance(v, dict):
        return dataclasses.is_dataclass(tp) or typing.get_origin(tp) is dict
    return isinstance(v, list) and typing.get_origin(tp) is list


def _value(tp, v, path: str):
    """v converted to tp, or a ConfigError naming path and the expected type."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return v
    if origin is Annotated:
        return parse(_keyed_class(tp, v, path), v, path)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _value(arg, v, path)
            except ConfigError as e:
                if _same_kind(arg, v):
                    raise e  # the value was the right kind; its own error is the useful one
        finite = "a finite " if isinstance(v, float) and not math.isfinite(v) else ""
        fail(path, f"expected {finite}{_type_name(tp)}, got {v!r}")
    if tp is type(None):
        if v is None:
            return None
    elif origin is list:
        if isinstance(v, list):
            (arg,) = typing.get_args(tp)
            return [_value(arg, x, f"{path}/{i}") for i, x in enumerate(v)]
    elif origin is dict:
        if isinstance(v, dict):
            _, arg = typing.get_args(tp)
            return {k: _value(arg, x, f"{path}/{k}") for k, x in v.items() if not k.startswith("_")}
    elif dataclasses.is_dataclass(tp):
        if isinstance(v, dict):
            return parse(tp, v, path)
    elif tp is bool:
        if isinstance(v, bool):
            return v
    elif tp is int:
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    elif tp is float:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if not math.isfinite(v):  # JSON's NaN/Infinity (Python reads them)
                fail(path, f"expected a finite number, got {v!r}")
            return float(v)
    elif tp is str:
        if isinstance(v, str):
            return v
    fail(path, f"expected {_type_name(tp)}, got {v!r}")


def parse(cls, data: dict, path: str):
    """An instance of dataclass cls from the dict data found at key path `path`."""
    if not isinstance(data, dict):
        fail(path, f"expected an object, got {data!r}")
    aliases = getattr(cls, "ALIASES", {})
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, v in data.items():
        if key.startswith("_"):
            continue
        name = aliases.get(key, key)
        if name not in fields:
            known = ", ".join(sorted(fields))
            fail(f"{path}/{key}" if path else key, f"unknown key (known keys here: {known})")
        if name in kwargs:
            fail(f"{path}/{key}", f"given twice (also as an alias of '{name}')")
        kwargs[name] = _value(hints[name], v, f"{path}/{key}" if path else key)
    missing = [n for n, f in fields.items() if f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING and n not in kwargs]
    if missing:
        fail(path or "input", f"missing required key '{missing[0]}'")
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if check is not None:
        check(path)
    return obj


def parse_kind(base, data, path: str):
    """The section of one of base's registered kinds (dpx.plugin) that data's `type` names."""
    return _value(keyed(*base.kinds()), data, path)


def to_dict(obj) -> dict:
    """The plain-JSON form of a parsed config (all defaults filled in)."""
    return dataclasses.asdict(obj)
