"""Find and read the input tables, and check their schemas.

In:  an input folder (tables found by name: `pins.parquet`, `pins.csv`, `pins.jsonl`, or a
     folder `pins/` of Parquet parts) and/or one file per table.
Out: one Polars frame per table with the columns as read, ids cast to strings, text columns
     as strings, plus `_file` (which file) and `_row` (1-based row in that file), so any
     later reject can name its file and row. Rows that cannot even be parsed (a malformed
     JSON line, a value of the wrong type in one JSONL row) come back as rejects.

A problem with a whole file (missing, unreadable, a required column missing, a column of an
impossible type) raises InputError naming the file, the column and the expected type.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import polars as pl

from pinfeatures.contracts import empty_rejects, make_rejects
from pinfeatures.errors import InputError

ID, TEXT, INT, ANY = "id", "text", "int", "any"


@dataclass(frozen=True)
class TableSchema:
    name: str
    required: dict[str, str]
    optional: dict[str, str] = field(default_factory=dict)
    required_one_of: tuple[str, ...] = ()
    """At least one of these columns must be present (captions: pin_id or image_sha256)."""

    @property
    def columns(self) -> dict[str, str]:
        return {**self.required, **self.optional}


SCHEMAS: dict[str, TableSchema] = {
    "pins": TableSchema(
        "pins",
        {"pin_id": ID, "title": TEXT, "description": TEXT, "image": TEXT},
        {"link": TEXT, "created_at": ANY, "language": TEXT},
    ),
    "boards": TableSchema("boards", {"board_id": ID, "title": TEXT}, {"description": TEXT}),
    "saves": TableSchema("saves", {"pin_id": ID, "board_id": ID}, {"user_id": ID, "saved_at": ANY}),
    "engagements": TableSchema(
        "engagements",
        {"query": TEXT, "pin_id": ID, "action": TEXT},
        {"user_id": ID, "ts": ANY, "country": TEXT, "locale": TEXT},
    ),
    "captions": TableSchema(
        "captions", {"caption": TEXT}, {"pin_id": ID, "image_sha256": ID, "model": TEXT}, ("pin_id", "image_sha256")
    ),
    "judgments": TableSchema("judgments", {"query": TEXT, "pin_id": ID, "label": ANY}),
}

REQUIRED_TABLES = ("pins", "boards", "saves", "engagements")
OPTIONAL_TABLES = ("captions",)
FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
ROW_COLS = ("_file", "_row")


@dataclass
class TableFile:
    """Where a table came from: one file, or a folder of Parquet parts."""

    name: str
    path: Path
    format: str
    files: list[Path]

    def fingerprint(self) -> dict[str, Any]:
        digest = hashlib.sha256()
        size = 0
        for f in self.files:
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
                    size += len(chunk)
        return {"files": [str(f) for f in self.files], "format": self.format, "sha256": digest.hexdigest(), "bytes": size}


@dataclass
class Table:
    """A table as read: the frame, where it came from, and the rows that could not be parsed."""

    name: str
    source: TableFile
    frame: pl.DataFrame
    unparsed: pl.DataFrame  # rejects schema (see validate.REJECT_SCHEMA)


def locate(name: str, input_dir: str | Path | None, explicit: str | Path | None, *, required: bool) -> TableFile | None:
    """Find table `name`: the explicit path wins, else `<input_dir>/<name>.{parquet,csv,jsonl}` or `<name>/`."""
    if explicit is not None:
        return _table_file(name, Path(explicit))
    if input_dir is not None:
        base = Path(input_dir)
        if not base.is_dir():
            raise InputError("input folder not found or not a folder", file=str(base))
        found = [base / f"{name}{ext}" for ext in FORMATS if (base / f"{name}{ext}").is_file()]
        if (base / name).is_dir():
            found.append(base / name)
        if len(found) > 1:
            raise InputError(f"table '{name}' is there more than once: {', '.join(p.name for p in found)}; keep one", file=str(base))
        if found:
            return _table_file(name, found[0])
    if required:
        where = f"in {input_dir}" if input_dir else "(no --input folder given)"
        raise InputError(f"table '{name}' not found {where}: give {name}.parquet, {name}.csv, {name}.jsonl or a folder {name}/ of Parquet parts, or --{name} FILE")
    return None


def _table_file(name: str, path: Path) -> TableFile:
    if path.is_dir():
        parts = sorted(p for p in path.rglob("*.parquet") if p.is_file())
        if not parts:
            raise InputError(f"folder for table '{name}' holds no .parquet parts", file=str(path))
        return TableFile(name, path, "parquet", parts)
    if not path.is_file():
        raise InputError(f"file for table '{name}' not found", file=str(path))
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"unknown format '{path.suffix}' for table '{name}': use .parquet, .csv or .jsonl", file=str(path))
    return TableFile(name, path, fmt, [path])


def read_table(path: str | Path, name: str) -> Table:
    """Read one table from a file or parts folder, check its schema, and normalise its types."""
    if name not in SCHEMAS:
        raise ValueError(f"unknown table {name!r}")
    return read_located(_table_file(name, Path(path)))


def read_located(tf: TableFile) -> Table:
    schema = SCHEMAS[tf.name]
    frames, unparsed = [], []
    for f in tf.files:
        frame, bad = _read_file(f, tf.format, schema)
        frame = _check_and_cast(frame, schema, f)
        if "_row" not in frame.columns:  # the line-by-line readers number rows themselves, skipping bad ones
            frame = frame.with_columns(pl.int_range(1, frame.height + 1, dtype=pl.Int64).alias("_row"))
        frames.append(frame.with_columns(pl.lit(str(f)).cast(pl.Categorical).alias("_file")))
        unparsed.append(bad)
    # no rechunk: one contiguous copy of a 20M-row table would double its memory for nothing
    frame = pl.concat(frames, how="diagonal_relaxed", rechunk=False) if len(frames) > 1 else frames[0]

    unparsed_df = pl.concat([empty_rejects(), *unparsed], how="vertical_relaxed")
    return Table(tf.name, tf, frame, unparsed_df)


# -- readers -----------------------------------------------------------------------


def _read_file(path: Path, fmt: str, schema: TableSchema) -> tuple[pl.DataFrame, pl.DataFrame]:

    try:
        if fmt == "parquet":
            return pl.read_parquet(path), empty_rejects()
        if fmt == "csv":
            # Every CSV column as text: ids and titles must never be guessed into numbers or dates.
            try:
                return pl.read_csv(path, infer_schema=False, encoding="utf8-lossy", truncate_ragged_lines=False), empty_rejects()
            except pl.exceptions.ComputeError:
                # Polars reads whole files or fails; a ragged record should cost one row, not the file.
                return _read_csv_by_record(path, schema)
        return _read_jsonl(path, schema)
    except InputError:
        raise
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read as {fmt}: {first}", file=str(path)) from None


def _read_jsonl(path: Path, schema: TableSchema) -> tuple[pl.DataFrame, pl.DataFrame]:
    """JSON Lines, parsed line by line so a bad line becomes a reject naming its row, not a failed run.

    Values of known columns must be scalars (string / number / bool / null); a row where one is an
    object or list is rejected with reason `bad_value` naming the column.
    """

    known = schema.columns
    columns: dict[str, list[Any]] = {}
    rows: list[int] = []
    bad: list[dict[str, Any]] = []
    n = 0
    # utf-8-sig: a byte-order mark some tools write must not break the first line
    with path.open("r", encoding="utf-8-sig", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue  # blank lines are not rows
            n += 1
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                bad.append(dict(row=lineno, column=None, reason="malformed_json", detail=str(exc), record=line.strip()[:2000]))
                continue
            if not isinstance(obj, dict):
                bad.append(dict(row=lineno, column=None, reason="malformed_json", detail="line is not a JSON object", record=line.strip()[:2000]))
                continue
            wrong = next((k for k, v in obj.items() if k in known and isinstance(v, (dict, list))), None)
            if wrong is not None:
                bad.append(dict(row=lineno, column=wrong, reason="bad_value", detail=f"'{wrong}' is a JSON {type(obj[wrong]).__name__}, expected a scalar", record=line.strip()[:2000]))
                continue
            for key in obj.keys() - columns.keys():
                columns[key] = [None] * len(rows)
            for key, col in columns.items():
                v = obj.get(key)
                if isinstance(v, float) and not math.isfinite(v):
                    v = None
                col.append(v if not isinstance(v, (dict, list)) else json.dumps(v, ensure_ascii=False))
            rows.append(lineno)
    data: dict[str, pl.Series] = {}
    for key, values in columns.items():
        try:
            data[key] = pl.Series(key, values, strict=False)
        except (TypeError, pl.exceptions.PolarsError):
            data[key] = pl.Series(key, [None if v is None else str(v) for v in values], dtype=pl.Utf8)
        if data[key].dtype == pl.Object:
            data[key] = pl.Series(key, [None if v is None else str(v) for v in values], dtype=pl.Utf8)
    frame = pl.DataFrame(list(data.values())) if data else pl.DataFrame()
    if not data and rows:
        frame = pl.DataFrame({"_dummy": [None] * len(rows)}).drop("_dummy")
    frame = frame.with_columns(pl.Series("_row", rows, dtype=pl.Int64)) if rows or data else pl.DataFrame({"_row": pl.Series([], dtype=pl.Int64)})
    return frame, make_rejects(schema.name, str(path), bad)


def _read_csv_by_record(path: Path, schema: TableSchema) -> tuple[pl.DataFrame, pl.DataFrame]:
    """CSV with the stdlib reader, for files Polars refuses: a record with more or fewer fields than
    the header becomes a `malformed_csv` reject naming its row (1-based, header excluded)."""
    import csv


    with path.open("r", encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            raise InputError("empty CSV: no header line", file=str(path))
        names: list[str] = []
        for h in (h.strip() for h in header):  # a repeated header name gets a suffix, as Polars does
            names.append(h if h not in names else f"{h}_duplicated_{sum(n.startswith(h + '_duplicated_') for n in names)}")
        rows: list[list[str | None]] = []
        numbers: list[int] = []
        bad: list[dict[str, Any]] = []
        for n, record in enumerate(reader, start=1):
            if not record:
                continue  # blank line
            if len(record) != len(names):
                bad.append(dict(row=n, column=None, reason="malformed_csv",
                                detail=f"{len(record)} fields, the header has {len(names)}", record=json.dumps(record, ensure_ascii=False)[:2000]))
                continue
            rows.append([v if v != "" else None for v in record])
            numbers.append(n)
    frame = pl.DataFrame({name: [r[i] for r in rows] for i, name in enumerate(names)}, schema={n: pl.Utf8 for n in names})
    return frame.with_columns(pl.Series("_row", numbers, dtype=pl.Int64)), make_rejects(schema.name, str(path), bad)


# -- schema ------------------------------------------------------------------------


def _check_and_cast(frame: pl.DataFrame, schema: TableSchema, path: Path) -> pl.DataFrame:
    cols = set(frame.columns)
    missing = [c for c in schema.required if c not in cols]
    if missing:
        raise InputError(
            f"missing required column(s) {', '.join(repr(c) for c in missing)} for table '{schema.name}' "
            f"(required: {', '.join(schema.required)}; found: {', '.join(sorted(c for c in cols if c not in ROW_COLS)) or 'none'})",
            file=str(path),
        )
    if schema.required_one_of and not any(c in cols for c in schema.required_one_of):
        raise InputError(f"table '{schema.name}' needs one of the columns {' or '.join(schema.required_one_of)}", file=str(path))
    casts = []
    for name, kind in schema.columns.items():
        if name in cols:
            casts.append(_cast(frame, name, kind, path))
    return frame.with_columns(casts) if casts else frame


def _cast(frame: pl.DataFrame, name: str, kind: str, path: Path) -> pl.Expr:
    dtype = frame.schema[name]
    col = pl.col(name)
    if kind == ANY:
        return col
    if dtype == pl.Null:
        return col.cast(pl.Utf8)
    if dtype in (pl.Utf8, pl.Categorical) or isinstance(dtype, pl.Enum):
        return col.cast(pl.Utf8).str.strip_chars() if kind == ID else col.cast(pl.Utf8)
    if dtype.is_integer():
        return col.cast(pl.Utf8)
    if dtype.is_float() and kind == ID:
        values = frame.get_column(name).drop_nulls()
        if values.len() and not bool(((values % 1) == 0).all()):
            bad_row = int(frame.with_row_index("_i").filter((col % 1) != 0).get_column("_i")[0]) + 1
            raise InputError(f"expected a string or integer id, found a fractional number (type {dtype})", file=str(path), column=name, row=bad_row)
        # ids written by pandas as floats (123.0 because of NaN) are integer ids.
        return col.cast(pl.Int64).cast(pl.Utf8)
    if kind == TEXT and (dtype.is_numeric() or dtype == pl.Boolean or dtype.is_temporal()):
        return col.cast(pl.Utf8)
    expected = "a string or integer id" if kind == ID else "text (string)"
    raise InputError(f"expected {expected}, found type {dtype}", file=str(path), column=name)


def input_tables(cfg: Any) -> dict[str, TableFile]:
    """Locate every input table named by a BuildSettings (required ones must exist)."""
    found: dict[str, TableFile] = {}
    for name in REQUIRED_TABLES + OPTIONAL_TABLES:
        tf = locate(name, cfg.input, getattr(cfg, name), required=name in REQUIRED_TABLES)
        if tf is not None:
            found[name] = tf
    return found


def load_inputs(cfg: Any, names: Iterable[str] | None = None) -> dict[str, Table]:
    """Locate and read the tables of a BuildSettings: {name: Table}."""
    located = input_tables(cfg)
    return {name: read_located(tf) for name, tf in located.items() if names is None or name in names}
