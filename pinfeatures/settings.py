"""Settings machinery: frozen dataclasses filled from defaults, an optional TOML file and CLI flags.

Each stage keeps its own settings class next to its code (build/settings.py, caption/settings.py,
evaluate/settings.py, pairs/settings.py, report/settings.py); this module only knows how to fill
and check them. Precedence is flag > TOML file > default.

A setting has one name and one home: the build's settings are top-level keys of the file, every
other stage's settings live in its table (`[caption]`, `[evaluate]`, `[pairs]`, `[report]`), and a
flag has the name of the setting it sets (`--caption-model` is `caption_model` under `[caption]`,
`--min-users` is the top-level `min_users`). Every check runs when the settings are made, so a
bad setting stops a command before it reads any data:

- an unknown key is an error with a "did you mean" and the keys of that table only;
- a value of the wrong type, a number outside its bounds (NaN and infinities included), or a
  string outside its choices is an error naming the setting (`caption.batch_size`);
- path settings are made absolute, so a build's manifest and what reads it do not depend on the
  working directory they were run from.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import math
import os
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from pinfeatures.errors import ConfigError

TABLES: tuple[str, ...] = ("caption", "evaluate", "pairs", "assess", "report")
"""The stage tables a config file may hold besides the build's top-level keys."""

_MISSING = dataclasses.MISSING


def setting(
    default: Any = _MISSING,
    *,
    factory: Any = _MISSING,
    min: float | None = None,  # noqa: A002 - the bound's natural name
    max: float | None = None,  # noqa: A002
    choices: tuple[str, ...] | None = None,
    path: bool = False,
) -> Any:
    """A dataclass field with its checks: inclusive numeric bounds (applied to each value of a
    tuple or table too), allowed string values, or `path=True` (made absolute)."""
    meta = {"min": min, "max": max, "choices": choices, "path": path}
    if factory is not _MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class Settings:
    """Base of every stage's frozen settings dataclass: checks its fields when made.

    Subclasses set TABLE ("" for the top level) and may add cross-field checks in `check()`.
    """

    TABLE: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.metadata.get("path") and value is not None:
                object.__setattr__(self, f.name, absolute_path(value))
            _check_value(self.name_of(f.name), value, f.metadata)
        self.check()

    def check(self) -> None:
        """Cross-field checks; raise ConfigError naming the setting."""

    @classmethod
    def name_of(cls, key: str) -> str:
        """The setting's name as messages give it: `board_top_k`, `caption.batch_size`."""
        return f"{cls.TABLE}.{key}" if cls.TABLE else key

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)


def check_increasing_shares(name: str, values: tuple[float, ...]) -> None:
    """Cut-offs such as popularity bands: at least one, each strictly between 0 and 1, increasing."""
    shares = list(values)
    if not shares or any(not 0 < v < 1 for v in shares) or shares != sorted(set(shares)):
        raise ConfigError(f"{name} must be increasing shares strictly between 0 and 1, got {shares}")


MEMORY_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}
_MEMORY = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(%|[a-z]*)\s*$", re.IGNORECASE)


def memory_bytes(name: str, value: str, total: int | None = None) -> int:
    """A memory amount as bytes: a number with a unit (`2GiB`, `512MB`, `1.5 GB`; B, KB, MB, GB, TB
    are powers of 1000, KiB, MiB, GiB, TiB of 1024) or a share of `total` (default: this
    machine's physical memory) such as `20%`. ConfigError naming `name` for anything else."""
    match = _MEMORY.match(str(value))
    unit = match.group(2).lower() if match else ""
    if not match or (unit != "%" and unit not in MEMORY_UNITS):
        raise ConfigError(f"{name} must be an amount with a unit (2GiB, 512MB) or a share of the machine's memory (20%), got {value!r}")
    amount = float(match.group(1))
    if unit == "%":
        if not 0 < amount <= 100:
            raise ConfigError(f"{name} must be a share between 0% and 100%, got {value!r}")
        return int((total if total is not None else physical_memory()) * amount / 100)
    return int(amount * MEMORY_UNITS[unit])


def physical_memory() -> int:
    """This machine's physical memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def absolute_path(value: str | Path) -> str:
    return os.path.abspath(os.path.expanduser(str(value)))


def _check_value(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_value(f"{name}.{k}", v, meta)
        return
    if isinstance(value, tuple):
        for v in value:
            _check_value(name, v, meta)
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value}")
    lo, hi = meta.get("min"), meta.get("max")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and (lo is not None or hi is not None):
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ConfigError(f"{name} must be {_bounds_text(lo, hi)}, got {_number(value)}")
    choices = meta.get("choices")
    if choices and isinstance(value, str) and value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _bounds_text(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"between {_number(lo)} and {_number(hi)}"
    return f">= {_number(lo)}" if lo is not None else f"<= {_number(hi)}"


def _number(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def to_plain(obj: Any) -> Any:
    """A settings object as JSON-ready dicts, lists and scalars."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


# -- TOML + flags -------------------------------------------------------------------


def load_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: config file is a folder") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML (not UTF-8: {exc.reason})") from None


def load_settings(
    config_file: str | Path | None,
    classes: Mapping[str, type],
    flags: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Make the settings a command needs: {table: instance} for each `classes` entry.

    `classes` maps a table ("" for the top level) to its settings class; a class may hold
    another stage's settings as a nested dataclass field (BuildSettings.caption is `[caption]`).
    `flags` maps a table (nested tables included) to {setting: value}; a None value, or an empty
    tuple of a repeatable flag, is a flag not given. Tables of other commands are left alone.
    """
    data: dict[str, Any] = load_toml(config_file) if config_file else {}
    for table, values in (flags or {}).items():
        target = data
        if table:
            if table in data and not isinstance(data[table], dict):
                raise ConfigError(f"{table} must be a table ([{table}]), got {type(data[table]).__name__}")
            target = data.setdefault(table, {})
        for key, value in values.items():
            if value is None or (isinstance(value, tuple) and not value):
                continue
            target[key] = value
    if "" in classes:
        _check_keys(classes[""], data, set(_field_names(classes[""])) | set(TABLES), "")
    else:
        # the build's top-level keys are not this command's business; a misspelt table of its own is
        for key, value in data.items():
            if isinstance(value, dict) and key not in TABLES and difflib.get_close_matches(key, list(classes), n=1, cutoff=0.6):
                _unknown(key, TABLES, "(a table)")
    out: dict[str, Any] = {}
    for table, cls in classes.items():
        if table:
            section = data.get(table, {})
            if not isinstance(section, Mapping):
                raise ConfigError(f"{table} must be a table ([{table}]), got {type(section).__name__}")
            out[table] = make(cls, section)
        else:
            names = set(_field_names(cls))
            out[table] = make(cls, {k: v for k, v in data.items() if k in names or k not in TABLES})
    return out


def make(cls: type, data: Mapping[str, Any]) -> Any:
    """An instance of settings class `cls` from a table of raw values (coerced and checked)."""
    names = _field_names(cls)
    _check_keys(cls, data, set(names), cls.TABLE)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        f = fields[key]
        value = _coerce(hints[key], value, cls.name_of(key))
        default = f.default_factory() if f.default_factory is not _MISSING else f.default
        if isinstance(default, Mapping) and isinstance(value, Mapping):
            # a table in the file overrides single entries (`[action_weights] save = 5`), not the whole map
            value = {**default, **value}
        kwargs[key] = value
    return cls(**kwargs)


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _check_keys(cls: type, data: Mapping[str, Any], known: set[str], table: str) -> None:
    for key in data:
        if key in known:
            continue
        # a key that belongs to a nested stage table written at this level: say where it goes
        hints = typing.get_type_hints(cls)
        for name, tp in hints.items():
            if dataclasses.is_dataclass(tp) and key in _field_names(tp):
                raise ConfigError(f"unknown setting {key!r} {_where(table)}; it is a [{name}] setting: put it under [{name}]")
        _unknown(key, sorted(known), _where(table))


def _where(table: str) -> str:
    return f"in [{table}]" if table else "at the top level"


def _unknown(key: str, known: Any, where: str) -> None:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown setting {key!r} {where}{hint} (known there: {', '.join(sorted(known))})")


def _coerce(tp: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name} must be a table ([{name}]), got {type(value).__name__}")
        return make(tp, value)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, name)
    if origin is tuple:
        if isinstance(value, str):
            value = [_parse_item(args[0], v.strip(), name) for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list, got {type(value).__name__}")
        return tuple(_coerce(args[0], v, name) for v in value)
    # get_origin(Mapping[str, float]) is collections.abc.Mapping, not typing.Mapping
    if origin in (Mapping, dict, collections.abc.Mapping) or tp is Mapping:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name} must be a table ([{name}]), got {type(value).__name__}")
        return {str(k): _coerce(args[1], v, f"{name}.{k}") for k, v in value.items()} if args else dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(f"{name} must be a finite number, got {value}") from None
    if tp is str:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return str(value)
    return value


def _parse_item(tp: Any, text: str, name: str) -> Any:
    """One item of a comma-separated flag value (`--bands 0.5,0.8`)."""
    if tp in (int, float):
        try:
            return tp(text)
        except ValueError:
            raise ConfigError(f"{name} must be a comma list of numbers, got {text!r}") from None
    return text
