"""Settings declared once. A dataclass field carries its option (flag, help, group, bounds) in its
metadata; the command line, the range checks and the command that remakes a config are all generated
from that one declaration:

    @dataclass
    class EvalConfig:
        jobs: int = option(0, "--jobs", "drives at a time (0: one per core)", low=0)

    parser = argparse.ArgumentParser()
    add_options(parser, EvalConfig)
    config = from_args(EvalConfig, parser.parse_args(argv))
    check_bounds(config)                  # the same bounds argparse enforced, for library callers
    argv = to_argv(config)                # parsed again, gives an equal config

Why our own generator rather than tyro or simple-parsing: the command lines are public and stable
(`--no-flip`, `--frame-size HxW`, repeated `--model`), `--help` must stay instant (no TensorFlow, no
rich), and the generator is one page of argparse. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any

from driving import cli

META = "option"


class ConfigError(ValueError):
    """A setting that cannot work. `field` names it, so a command line can name its option."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclass(frozen=True)
class Option:
    """How one setting appears on a command line, and the range it must lie in."""

    flag: str | None  # "--epochs"; None for a positional argument (named by `metavar`)
    help: str
    group: str | None = None  # the --help section
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    nargs: str | None = None  # "+" or "*": a list given after one flag
    repeat: bool = False  # a list given one flag per value: --model a --model b
    required: bool = False
    size_with: str | None = None  # HxW: this field holds H, the named sibling field holds W


def option(default: Any = MISSING, flag: str | None = None, help: str = "", **kw) -> Any:
    """A dataclass field declared with its option; `default` may be a callable for a list."""
    spec = Option(flag=flag, help=help, **kw)
    if callable(default):  # list, dict or a lambda: a fresh value for every instance
        return dataclasses.field(default_factory=default, metadata={META: spec})
    return dataclasses.field(default=default, metadata={META: spec})


def same_as(cls, name: str, **changes) -> Any:
    """Field `name` of dataclass `cls` declared again elsewhere, with its default, flag, bounds and
    help (or `changes` to them): a setting two commands share is still declared once."""
    source = next(f for f in dataclasses.fields(cls) if f.name == name)
    spec = dataclasses.replace(spec_of(source), **changes)
    return option(_default(source), spec.flag, spec.help, **{
        k: getattr(spec, k) for k in ("group", "low", "high", "low_open", "high_open", "choices",
                                      "metavar", "nargs", "repeat", "required", "size_with")
    })  # fmt: skip


def spec_of(field: dataclasses.Field) -> Option | None:
    return field.metadata.get(META)


def _default(field: dataclasses.Field) -> Any:
    if field.default is not MISSING:
        return field.default
    if field.default_factory is not MISSING:
        return field.default_factory()
    return MISSING


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _base(kind) -> type:
    """int for `int | None`, str for `list[str]`, the class itself otherwise."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) in (list, tuple):
        return args[0] if args else str
    if args and typing.get_origin(kind) is not None:
        return _base(args[0])
    return kind


def _is_list(kind) -> bool:
    return typing.get_origin(kind) is list


def _declared(cls) -> list[tuple[dataclasses.Field, Option | None, Any]]:
    hints = _hints(cls)
    return [(f, spec_of(f), hints[f.name]) for f in dataclasses.fields(cls)]


def _nested(kind) -> bool:
    return dataclasses.is_dataclass(kind) and isinstance(kind, type)


def _parser_type(spec: Option, base: type) -> Callable[[str], Any] | None:
    """The argparse type that refuses an out-of-range value in one line."""
    if spec.size_with:
        return cli.size
    if base is bool or spec.choices:
        return None
    if base is int:
        low = None if spec.low is None else int(spec.low)
        high = None if spec.high is None else int(spec.high)
        return cli.integer(low, high)
    if base is float:
        return cli.number(spec.low, spec.high, spec.low_open, spec.high_open)
    if base is Path:
        return Path
    return str


def _with_default(help: str, default: Any, base: type) -> str:
    if "default" in help or base is bool or default in (None, MISSING, []):
        return help
    shown = " ".join(map(str, default)) if isinstance(default, list) else default
    return f"{help} (default {shown})".replace("%", "%%")


def add_options(
    parser: argparse.ArgumentParser,
    cls,
    groups: dict[str, argparse._ArgumentGroup] | None = None,
    prefix: str = "",
) -> dict[str, argparse._ArgumentGroup]:
    """Add an argument for every declared field of dataclass `cls` (and of its nested dataclass
    fields); each argument's dest is the field's dotted path. Returns the groups, by title, so a
    caller can add its own arguments to them."""
    groups = {} if groups is None else groups
    for field, spec, kind in _declared(cls):
        path = prefix + field.name
        if spec is None:
            if _nested(kind):
                add_options(parser, kind, groups, path + ".")
            continue
        target = parser
        if spec.group:
            if spec.group not in groups:
                groups[spec.group] = parser.add_argument_group(spec.group)
            target = groups[spec.group]
        default, base = _default(field), _base(kind)
        kw: dict[str, Any] = {"help": _with_default(spec.help, default, base)}
        if spec.flag is None:  # positional
            kw |= {"metavar": spec.metavar or field.name.upper(), "type": _parser_type(spec, base)}
            if _is_list(kind):
                kw["nargs"] = spec.nargs or "+"
            target.add_argument(path, **kw)
            continue
        kw["dest"] = path
        if base is bool:
            kw |= {"action": "store_false" if default else "store_true", "default": default}
        else:
            metavar = spec.metavar or (
                None if spec.choices else spec.flag.lstrip("-").replace("-", "_").upper()
            )
            kw |= {"type": _parser_type(spec, base), "metavar": metavar, "choices": spec.choices}
            if spec.repeat:
                kw |= {"action": "append", "default": None}
            else:
                kw["default"] = None if spec.size_with else default
                if spec.nargs:
                    kw["nargs"] = spec.nargs
            if spec.required:
                kw["required"] = True
        target.add_argument(spec.flag, **kw)
    return groups


def from_args(cls, args: argparse.Namespace, prefix: str = "", **given: Any):
    """The `cls` a parsed command line means (fields not on the command line keep their defaults,
    or take `given`)."""
    values: dict[str, Any] = {}
    for field, spec, kind in _declared(cls):
        path = prefix + field.name
        if field.name in given:
            values[field.name] = given[field.name]
        elif spec is None:
            if _nested(kind) and any(k.startswith(path + ".") for k in vars(args)):
                values[field.name] = from_args(kind, args, path + ".")
        elif spec.size_with:
            size = getattr(args, path, None)
            if size is not None:
                values[field.name], values[spec.size_with] = size
        elif hasattr(args, path):
            value = getattr(args, path)
            if spec.repeat:
                value = list(dict.fromkeys(value)) if value else _default(field)
            elif isinstance(value, Path) and _base(kind) is str:
                value = str(value)
            elif _is_list(kind) and value is not None:
                value = [str(v) if isinstance(v, Path) and _base(kind) is str else v for v in value]
            values[field.name] = value
    return cls(**values)


def _show(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)  # exact: parses back to the same float
    return str(value)


def to_argv(config, prefix: str = "") -> list[str]:
    """The arguments that make `config` from the defaults: every declared field that differs from
    its default, so that parsing them again gives an equal config."""
    argv: list[str] = []
    positional: list[str] = []
    for field, spec, kind in _declared(type(config)):
        value = getattr(config, field.name)
        if spec is None:
            if _nested(kind):
                argv += to_argv(value)
            continue
        default = _default(field)
        if spec.size_with:
            width, default_width = getattr(config, spec.size_with), _sibling_default(config, spec.size_with)
            if (value, width) != (default, default_width):
                argv += [spec.flag, f"{value}x{width}"]
            continue
        if spec.flag is None:
            positional += [_show(v) for v in value] if isinstance(value, list) else [_show(value)]
            continue
        if value == default or (value is None and default is None):
            continue
        if _base(kind) is bool:
            argv.append(spec.flag)
        elif spec.repeat:
            for item in value:
                argv += [spec.flag, _show(item)]
        elif isinstance(value, list):
            argv += [spec.flag, *map(_show, value)]
        else:
            argv += [spec.flag, _show(value)]
    return positional + argv


def _sibling_default(config, name: str) -> Any:
    return next(_default(f) for f in dataclasses.fields(config) if f.name == name)


def check_bounds(config, prefix: str = "") -> None:
    """Refuse, with a ConfigError naming the field, any declared value of the wrong type or out of
    its declared range: the same rules the command line applies, for callers that build configs
    in code or read them from a file."""
    for field, spec, kind in _declared(type(config)):
        value = getattr(config, field.name)
        if spec is None:
            if _nested(kind) and dataclasses.is_dataclass(value):
                check_bounds(value, prefix)
            continue
        if value is None and type(None) in typing.get_args(kind):
            continue
        base = _base(kind)
        if spec.size_with:  # HxW: the sibling field lies in the same range
            _check_one(spec.size_with, spec, base, getattr(config, spec.size_with))
        items = value if _is_list(kind) else [value]
        if _is_list(kind) and not isinstance(value, list):
            raise ConfigError(field.name, f"must be a list, got {type(value).__name__}")
        if _is_list(kind) and spec.required and not value:
            raise ConfigError(field.name, "must name at least one")
        for item in items:
            _check_one(field.name, spec, base, item)


def _check_one(name: str, spec: Option, base: type, value: Any) -> None:
    if base is bool:
        if not isinstance(value, bool):
            raise ConfigError(name, f"must be true or false, got {value!r}")
        return
    if base in (int, float):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if base is int and not isinstance(value, int):
            number = False
        if not number or not math.isfinite(value):
            kind = "a whole number" if base is int else "a finite number"
            raise ConfigError(name, f"must be {kind}, got {value!r}")
        low_ok = spec.low is None or (value > spec.low if spec.low_open else value >= spec.low)
        high_ok = spec.high is None or (value < spec.high if spec.high_open else value <= spec.high)
        if not (low_ok and high_ok):
            span = cli.range_text(spec.low, spec.high, spec.low_open, spec.high_open)
            kind = "a whole number" if base is int else "a number"
            raise ConfigError(name, f"must be {kind} {span}, got {value!r}")
        return
    if base in (str, Path):
        if not isinstance(value, (str, Path)):
            raise ConfigError(name, f"must be text, got {type(value).__name__}")
        if spec.choices and value not in spec.choices:
            raise ConfigError(name, f"must be one of {', '.join(spec.choices)}, got {value!r}")


def flag_for(cls, name: str) -> str | None:
    """The option that sets field `name` of `cls` or of one of its nested dataclasses."""
    for field, spec, kind in _declared(cls):
        if spec is None and _nested(kind):
            found = flag_for(kind, name)
            if found:
                return found
        elif spec is not None and (field.name == name or spec.size_with == name):
            return spec.flag or (spec.metavar or field.name.upper())
    return None


def declared_flags(cls) -> Sequence[str]:
    """Every flag `add_options` makes for `cls` (for tests and documentation)."""
    flags = []
    for _, spec, kind in _declared(cls):
        if spec is None and _nested(kind):
            flags += declared_flags(kind)
        elif spec is not None and spec.flag:
            flags.append(spec.flag)
    return flags
