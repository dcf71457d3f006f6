"""Find and read the input tables, and check their schemas.

In:  an input folder (tables found by name: `pins.parquet`, `pins.csv`, `pins.jsonl`, or a
     folder `pins/` of Parquet parts) and/or one file per table.
Out: one Polars frame per table with the columns as read, ids cast to strings, text columns
     as strings, plus `_file` (which file) and `_row` (where in that file: the physical line
     where the record starts in CSV and JSONL, the header being line 1 of a CSV; the 1-based
     row in Parquet), so any later reject can name its file and row. Rows that cannot be used
     come back as rejects of that row only: a malformed or too deeply nested JSON line, a lone
     surrogate escape, a nested value in a known column, a ragged CSV record (`malformed_json`,
     `bad_value`, `malformed_csv`), an id that is a fractional, boolean or inexact number
     (`bad_value`).

Columns beyond the table's known ones are carried, at most MAX_EXTRA_COLUMNS of them (the
first seen); more, and input columns named like pinfeatures' own bookkeeping columns
(RESERVED_COLUMNS), are ignored with a warning on stderr. CSV and JSONL are read in the
`encoding` setting (UTF-8 by default); bytes that do not decode become U+FFFD and are counted
in a warning naming the file.

A problem with a whole file (missing, unreadable, a required column missing, a column of an
impossible type) raises InputError naming the file, the column and the expected type.
"""

from __future__ import annotations

import codecs
import contextlib
import contextvars
import csv
import hashlib
import io
import json
import math
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import polars as pl

from pinfeatures.contracts import empty_rejects, make_rejects
from pinfeatures.errors import ConfigError, InputError
from pinfeatures.progress import warn

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
    # a labeled sample for `pinfeatures assess`: the pairs output with a label column
    "labels": TableSchema(
        "labels", {"stratum": TEXT, "sampling_weight": ANY, "label": ANY}, {"query": TEXT, "pin_id": ID, "variant": TEXT}
    ),
}

REQUIRED_TABLES = ("pins", "boards", "saves", "engagements")
OPTIONAL_TABLES = ("captions",)
FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
ROW_COLS = ("_file", "_row")
RESERVED_COLUMNS = frozenset({*ROW_COLS, "_reason", "_column", "_detail", "_key"})
"""Names of pinfeatures' own bookkeeping columns (read, validate): an input column so named is ignored."""
MAX_EXTRA_COLUMNS = 32
"""Most input columns beyond a table's known ones that are carried (the first seen); the rest are
ignored. Bounded so that rows with ever-new keys cost linear time and memory."""
MAX_RECORD_CHARS = 2000
"""Longest raw line kept in the `record` of a reject made while reading."""
MAX_EXACT_FLOAT_ID = 2**53
"""Above this a float cannot hold every integer: such an id has lost digits already."""
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # what errors="surrogateescape" makes of a byte that does not decode


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
    warnings: list[str] = field(default_factory=list)
    """What was read differently than written (bytes not in the encoding, columns ignored): also on stderr."""


_WARNINGS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("pinfeatures_read_warnings", default=None)


def _warn(message: str) -> None:
    """A reading warning: on stderr now, and in the Table being read (a build's --strict stops on it)."""
    warn(message)
    sink = _WARNINGS.get()
    if sink is not None:
        sink.append(message)


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


def read_table(path: str | Path, name: str, encoding: str = "utf-8") -> Table:
    """Read one table from a file or parts folder, check its schema, and normalise its types."""
    if name not in SCHEMAS:
        raise ValueError(f"unknown table {name!r}")
    return read_located(_table_file(name, Path(path)), encoding)


def read_located(tf: TableFile, encoding: str = "utf-8") -> Table:
    """Read a located table: every file's rows with `_file`/`_row`, and the rows that could not be used as rejects."""
    schema = SCHEMAS[tf.name]
    codec = text_codec(encoding)
    frames, unparsed, warnings = [], [], []
    token = _WARNINGS.set(warnings)
    try:
        for f in tf.files:
            frame, bad = _read_file(f, tf.format, schema, codec)
            frame, bad_ids = _check_and_cast(frame, schema, f)
            frames.append(frame.with_columns(pl.lit(str(f)).cast(pl.Categorical).alias("_file")))
            unparsed += [bad, bad_ids]
    finally:
        _WARNINGS.reset(token)
    # no rechunk: one contiguous copy of a 20M-row table would double its memory for nothing
    frame = pl.concat(frames, how="diagonal_relaxed", rechunk=False) if len(frames) > 1 else frames[0]

    unparsed_df = pl.concat([empty_rejects(), *unparsed], how="vertical_relaxed")
    return Table(tf.name, tf, frame, unparsed_df, warnings)


# -- encodings ---------------------------------------------------------------------


def text_codec(encoding: str) -> str:
    """The codec name for the `encoding` setting; ConfigError when Python has no such text encoding."""
    try:
        info = codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise ConfigError(f"encoding {encoding!r} is not a known text encoding (e.g. utf-8, latin-1, cp1252)") from None
    if not getattr(info, "_is_text_encoding", True):  # rot13, base64, zlib: codecs, but not for text files
        raise ConfigError(f"encoding {encoding!r} is not a text encoding (e.g. utf-8, latin-1, cp1252)")
    return "utf-8-sig" if info.name == "utf-8" else info.name  # a byte-order mark is not part of line 1


def _text_lines(path: Path, codec: str) -> Iterator[tuple[str, int]]:
    """The file's lines (split at "\\n" only) and, for each, how many bytes did not decode (now U+FFFD)."""
    with path.open("rb") as raw:
        text = io.TextIOWrapper(raw, encoding=codec, errors="surrogateescape", newline="\n")
        for line in text:
            if line.isascii():
                yield line, 0
                continue
            n_bad = len(_ESCAPED_BYTE.findall(line))
            yield (_ESCAPED_BYTE.sub("\ufffd", line) if n_bad else line), n_bad


def _warn_undecodable(path: Path, codec: str, n_bad: int) -> None:
    if n_bad:
        name = "utf-8" if codec == "utf-8-sig" else codec
        _warn(f"{path}: {n_bad} byte(s) are not valid {name} and were read as U+FFFD; "
             "if the file is in another encoding, give it with --encoding (e.g. latin-1, cp1252)")


@contextlib.contextmanager
def _utf8_source(path: Path, codec: str) -> Iterator[Path]:
    """A UTF-8 file with the contents of `path` (itself when it already is UTF-8), bytes that do not
    decode replaced by U+FFFD and counted in a warning. Other encodings are transcoded to a
    temporary file, in a stream, so memory stays bounded."""
    n_bad = 0
    if codec == "utf-8-sig":
        decoder = codecs.getincrementaldecoder(codec)(errors="surrogateescape")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                text = decoder.decode(chunk)
                if not text.isascii():
                    n_bad += len(_ESCAPED_BYTE.findall(text))
            n_bad += len(_ESCAPED_BYTE.findall(decoder.decode(b"", final=True)))
        _warn_undecodable(path, codec, n_bad)
        yield path  # Polars reads it with utf8-lossy: the same bytes become U+FFFD
        return
    with tempfile.TemporaryDirectory(prefix="pinfeatures-transcode-") as tmp:
        out_path = Path(tmp) / path.name
        with out_path.open("w", encoding="utf-8", newline="") as out:
            for line, bad in _text_lines(path, codec):
                n_bad += bad
                out.write(line)
        _warn_undecodable(path, codec, n_bad)
        yield out_path


# -- columns -----------------------------------------------------------------------


@dataclass
class ColumnPlan:
    """Which input columns a table keeps: its known columns, and the first MAX_EXTRA_COLUMNS others."""

    schema: TableSchema
    kept: list[str] = field(default_factory=list)
    reserved: list[str] = field(default_factory=list)
    dropped: set[str] = field(default_factory=set)
    _extra: int = 0

    def admit(self, name: str) -> bool:
        """Whether column `name` (seen for the first time) is kept."""
        if name in RESERVED_COLUMNS:
            self.reserved.append(name)
            return False
        if name not in self.schema.columns:
            if self._extra >= MAX_EXTRA_COLUMNS:
                self.dropped.add(name)
                return False
            self._extra += 1
        self.kept.append(name)
        return True

    def warn(self, path: Path) -> None:
        if self.reserved:
            _warn(f"{path}: column(s) {', '.join(repr(c) for c in sorted(self.reserved))} ignored: "
                 f"the name is reserved for pinfeatures' own bookkeeping ({', '.join(sorted(RESERVED_COLUMNS))})")
        if self.dropped:
            first = ", ".join(repr(c) for c in sorted(self.dropped)[:3])
            _warn(f"{path}: {len(self.dropped)} column(s) beyond the first {MAX_EXTRA_COLUMNS} extra ones ignored ({first}, ...)")


def _plan(names: Iterable[str], schema: TableSchema, path: Path) -> list[str]:
    plan = ColumnPlan(schema)
    for name in names:
        plan.admit(name)
    plan.warn(path)
    return plan.kept


# -- readers -----------------------------------------------------------------------


def _read_file(path: Path, fmt: str, schema: TableSchema, codec: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One file's rows (known columns and bounded extras, plus `_row`) and the rows that could not be parsed."""
    try:
        if fmt == "parquet":
            kept = _plan(pl.read_parquet_schema(path), schema, path)
            frame = pl.read_parquet(path, columns=kept)
            return frame.with_columns(pl.int_range(1, frame.height + 1, dtype=pl.Int64).alias("_row")), empty_rejects()
        if fmt == "csv":
            return _read_csv(path, schema, codec)
        return _read_jsonl(path, schema, codec)
    except (InputError, ConfigError):
        raise
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read as {fmt}: {first}", file=str(path)) from None


def jsonl_id(value: Any) -> tuple[str | None, str | None]:
    """An id as one JSON value -> (its string, None), or (None, why it cannot be an id).

    Strings stay as written; integers and integral floats (`7`, `7.0`) are the integer's digits.
    NaN is a missing id. A fractional number, a boolean, an infinity or a float past 2^53 (digits
    already lost) cannot be an id.
    """
    if value is None or isinstance(value, str):
        return value, None
    if isinstance(value, bool):
        return None, f"a JSON boolean ({json.dumps(value)})"
    if isinstance(value, int):
        return str(value), None
    if isinstance(value, float):
        if math.isnan(value):
            return None, None  # NaN, as some writers spell a missing value
        if not math.isfinite(value):
            return None, f"a non-finite number ({value})"
        if not value.is_integer():
            return None, f"a fractional number ({value!r})"
        if abs(value) > MAX_EXACT_FLOAT_ID:
            return None, f"a float too large to be an exact id ({value!r}): write it as an integer or a string"
        return str(int(value)), None
    return None, f"a JSON {type(value).__name__}"


def parse_jsonl_line(line: str, schema: TableSchema) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """One JSONL line -> (its values by column, None), or (None, a reject: column, reason, detail, record).

    Values of known columns are scalars and ids are strings (jsonl_id); a nested value of an
    extra column becomes its JSON text; a non-finite number is null.
    """
    record = line.strip()[:MAX_RECORD_CHARS]

    def reject(column: str | None, reason: str, detail: str) -> tuple[None, dict[str, Any]]:
        return None, dict(column=column, reason=reason, detail=detail, record=record)

    try:
        obj = json.loads(line)
    except RecursionError:
        return reject(None, "malformed_json", "nested too deeply")
    except ValueError as exc:  # JSONDecodeError, or a number of more than 4300 digits
        return reject(None, "malformed_json", str(exc))
    if not isinstance(obj, dict):
        return reject(None, "malformed_json", "line is not a JSON object")
    if "\\u" in line and _SURROGATE_ESCAPE.search(line):
        for key, value in obj.items():
            try:
                json.dumps([key, value], ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:  # "\ud800": a lone surrogate is no character, no output could hold it
                return reject(key if isinstance(key, str) and key.isprintable() else None, "bad_value",
                              "a lone surrogate escape (\\ud800-\\udfff): not valid Unicode text")
    known = schema.columns
    row: dict[str, Any] = {}
    for key, value in obj.items():
        kind = known.get(key)
        if kind is not None and isinstance(value, (dict, list)):
            return reject(key, "bad_value", f"'{key}' is a JSON {'object' if isinstance(value, dict) else 'array'}, expected a scalar")
        if kind == ID:
            value, problem = jsonl_id(value)
            if problem is not None:
                return reject(key, "bad_value", f"'{key}' is {problem}, expected a string or integer id")
        elif isinstance(value, float) and not math.isfinite(value):
            value = None
        elif isinstance(value, (dict, list)):
            value = json.dumps(value, ensure_ascii=False)
        row[key] = value
    return row, None


def _read_jsonl(path: Path, schema: TableSchema, codec: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """JSON Lines, parsed line by line so a bad line becomes a reject naming its line, not a failed run.

    Time and memory are linear in the file: at most MAX_EXTRA_COLUMNS extra columns are kept.
    """
    plan = ColumnPlan(schema)
    columns: dict[str, list[Any]] = {}
    rows: list[int] = []
    bad: list[dict[str, Any]] = []
    n_bad_bytes = 0
    for lineno, (line, n_bad) in enumerate(_text_lines(path, codec), start=1):
        n_bad_bytes += n_bad
        if not line.strip():
            continue  # blank lines are not rows
        row, problem = parse_jsonl_line(line, schema)
        if problem is not None:
            bad.append(dict(row=lineno, **problem))
            continue
        assert row is not None
        for key in row:  # in the line's order, so the extra columns kept are the first seen
            if key not in columns and key not in plan.dropped and key not in plan.reserved and plan.admit(key):
                columns[key] = [None] * len(rows)
        for key, col in columns.items():
            col.append(row.get(key))
        rows.append(lineno)
    _warn_undecodable(path, codec, n_bad_bytes)
    plan.warn(path)
    data = [_series(key, values) for key, values in columns.items()]
    frame = pl.DataFrame(data, height=len(rows)) if data else pl.DataFrame(height=len(rows))
    return frame.with_columns(pl.Series("_row", rows, dtype=pl.Int64)), make_rejects(schema.name, str(path), bad)


def _series(name: str, values: list[Any]) -> pl.Series:
    """A column from JSON scalars; a mix Polars cannot hold in one type becomes text."""
    try:
        series = pl.Series(name, values, strict=False)
        if series.dtype != pl.Object:
            return series
    except Exception:  # noqa: BLE001 - mixed types, integers past 128 bits: text is always possible
        pass
    return pl.Series(name, [None if v is None else str(v) for v in values], dtype=pl.Utf8)


def _read_csv(path: Path, schema: TableSchema, codec: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """CSV, every column as text (ids and titles are never guessed into numbers or dates)."""
    with _utf8_source(path, codec) as source:
        try:
            frame = pl.read_csv(source, infer_schema=False, encoding="utf8-lossy", truncate_ragged_lines=False)
        except pl.exceptions.ComputeError:
            # Polars reads whole files or fails; a ragged record should cost one row, not the file.
            return _read_csv_by_record(source, path, schema)
    lines = csv_line_numbers(frame)
    return frame.select(_plan(frame.columns, schema, path)).with_columns(lines), empty_rejects()


def csv_line_numbers(frame: pl.DataFrame) -> pl.Series:
    """`_row` of a CSV read by Polars: the physical line where each record starts (the header is line 1).

    A quoted field holding line breaks makes its record span several lines; a blank line is a
    record of nulls to Polars, one line long.
    """
    header_lines = 1 + sum(name.count("\n") for name in frame.columns)
    if frame.width == 0 or frame.height == 0:
        return pl.Series("_row", [], dtype=pl.Int64)
    spans = frame.select(
        (1 + pl.sum_horizontal(pl.col(c).str.count_matches("\n", literal=True).fill_null(0) for c in frame.columns))
        .cast(pl.Int64).alias("_row")
    ).get_column("_row")
    return (header_lines + 1 + spans.cum_sum() - spans).alias("_row")


def _read_csv_by_record(source: Path, path: Path, schema: TableSchema) -> tuple[pl.DataFrame, pl.DataFrame]:
    """CSV with the stdlib reader, for files Polars refuses: a record with more or fewer fields than
    the header becomes a `malformed_csv` reject naming the line where it starts."""
    with source.open("r", encoding="utf-8-sig", errors="replace", newline="") as fh:
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
        start = reader.line_num + 1
        for record in reader:
            line, start = start, reader.line_num + 1
            if not record:
                continue  # blank line
            if len(record) != len(names):
                bad.append(dict(row=line, column=None, reason="malformed_csv",
                                detail=f"{len(record)} fields, the header has {len(names)}", record=json.dumps(record, ensure_ascii=False)[:MAX_RECORD_CHARS]))
                continue
            rows.append([v if v != "" else None for v in record])
            numbers.append(line)
    kept = _plan(names, schema, path)
    index = {n: i for i, n in enumerate(names)}
    frame = pl.DataFrame({name: [r[index[name]] for r in rows] for name in kept}, schema={n: pl.Utf8 for n in kept})
    return frame.with_columns(pl.Series("_row", numbers, dtype=pl.Int64)), make_rejects(schema.name, str(path), bad)


# -- schema ------------------------------------------------------------------------


def _check_and_cast(frame: pl.DataFrame, schema: TableSchema, path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Check the required columns and cast known ones to their kinds; rows whose float id is not an
    exact integer come back as `bad_value` rejects (a typed column of the wrong kind is an InputError)."""
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
    frame, bad = _reject_inexact_float_ids(frame, schema, path)
    casts = []
    for name, kind in schema.columns.items():
        if name in cols:
            casts.append(_cast(frame, name, kind, path))
    return (frame.with_columns(casts) if casts else frame), bad


def _reject_inexact_float_ids(frame: pl.DataFrame, schema: TableSchema, path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split off rows whose id, in a float column (Parquet written by pandas), is fractional, non-finite or past 2^53."""
    float_ids = [c for c, kind in schema.columns.items() if kind == ID and c in frame.columns and frame.schema[c].is_float()]
    if not float_ids:
        return frame, empty_rejects()
    problems = [
        pl.when(pl.col(c).is_null() | pl.col(c).is_nan()).then(None)  # NaN: pandas' missing value
        .when(~pl.col(c).is_finite()).then(pl.lit(f"'{c}' is a non-finite number"))
        .when((pl.col(c) % 1) != 0).then(pl.lit(f"'{c}' is a fractional number (") + pl.col(c).cast(pl.Utf8) + pl.lit(")"))
        .when(pl.col(c).abs() > MAX_EXACT_FLOAT_ID).then(pl.lit(f"'{c}' is a float too large to be an exact id"))
        .otherwise(None)
        for c in float_ids
    ]
    marked = frame.with_columns(
        pl.coalesce(*problems).alias("_detail"),
        pl.coalesce(*(pl.when(p.is_not_null()).then(pl.lit(c)) for c, p in zip(float_ids, problems))).alias("_column"),
    )
    is_bad = pl.col("_detail").is_not_null()
    bad = marked.filter(is_bad)
    if bad.height == 0:
        return frame, empty_rejects()
    data = bad.drop("_row", "_detail", "_column")
    records = data.select(pl.struct(pl.all()).struct.json_encode().str.slice(0, MAX_RECORD_CHARS)).to_series() if data.width else [None] * bad.height
    rejects = make_rejects(schema.name, str(path), [
        dict(row=row, column=column, reason="bad_value", detail=f"{detail}, expected a string or integer id", record=record)
        for row, column, detail, record in zip(bad["_row"], bad["_column"], bad["_detail"], records)
    ])
    return marked.filter(~is_bad).drop("_detail", "_column"), rejects


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
        # ids written by pandas as floats (123.0 because of NaN) are integer ids; the others were rejected
        return col.fill_nan(None).cast(pl.Int64).cast(pl.Utf8)
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

