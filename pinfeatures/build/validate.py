"""Validate the input tables: split every table into valid rows and rejects, losing nothing.

In:  {name: sources.Table} as read (ids as strings, `_file`, `_row`).
Out: ValidTables (one frame per table, valid rows only, `_file`/`_row` dropped) and one rejects
     frame (REJECT_SCHEMA) holding every row that is not used, with its table, file, row,
     column, reason and the row itself as JSON, made safe to write (see "Privacy" below).

User ids (saves, engagements) are canonical: stripped, a whole number written with a decimal point
(`7.0`, from a float column) is that number (`7`), and an empty or blank id is null (no user).

Privacy of the reject records (the same rules for every table):
  * no user_id: the key is dropped from every record, and a reject about the user_id column says
    so without its value;
  * every text value but the ids (pin_id, board_id, image_sha256) goes through the phrase scrubber
    (scrub.normalize_phrases: folded, capped at MAX_RECORD_FIELD_CHARS, personal data removed);
  * a line that could not be parsed into columns (malformed_json, malformed_csv, ...) is scrubbed
    whole, and withheld (record null) in saves and engagements, where it may hold a user id or a
    query that never passed the threshold;
  * an engagement's query stays in its record only if that (query, pin) passed the privacy
    threshold: `withhold_unkept_queries`, run once the aggregate stage knows which did.

Reasons, checked in this order (a row gets the first that applies):
  pins:        null_id, empty_id, duplicate_pin_id (the first row of an id in input order is kept)
  boards:      null_id, empty_id, duplicate_board_id
  saves:       null_id, empty_id, unknown_pin, unknown_board
  engagements: null_id, empty_id, empty_query, unknown_action, unknown_pin
  captions:    null_id, empty_caption, unknown_pin, duplicate_caption
  (any table): malformed_json, bad_value, raised while reading
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import polars as pl

from pinfeatures.build.aggregate import has_user_ids
from pinfeatures.build.read import ROW_COLS, Table
from pinfeatures.build.scrub import update_where, normalize_phrases
from pinfeatures.chunks import ordered_map
from pinfeatures.contracts import ACTIONS, REJECT_SCHEMA, empty_rejects

MAX_RECORD_CHARS = 20_000
MAX_RECORD_FIELD_CHARS = 2_000
ID_COLUMNS = ("pin_id", "board_id", "image_sha256")
"""Kept as written in reject records: they name content, not people, and valid ones are in the outputs."""
USER_TABLES = ("saves", "engagements")
"""Tables with user ids (and queries): a line of theirs that could not be parsed keeps no record."""
USER_ID_WITHHELD = "value withheld: user ids never leave the build"


@dataclass
class ValidTables:
    pins: pl.DataFrame
    boards: pl.DataFrame
    saves: pl.DataFrame | None
    """None when streamed (validate_tables' `sink` got the rows)."""
    engagements: pl.DataFrame | None
    captions: pl.DataFrame | None
    rejects: pl.DataFrame
    counts: dict[str, dict[str, int]]
    """{table: {read, valid, rejected}}; read = valid + rejected always."""
    reject_reasons: dict[str, dict[str, int]]
    users_seen: bool = False
    """Whether some valid engagement has a user id (the privacy threshold can count users)."""


def _present(col: str) -> pl.Expr:
    """Holds a non-space character (null stays null): one regex test that stops at the first,
    where stripping would copy every value."""
    return pl.col(col).cast(pl.Utf8).str.contains(r"\S")


def _blank(col: str) -> pl.Expr:
    """Empty or whitespace only (null stays null)."""
    return ~_present(col)


@dataclass(frozen=True)
class Check:
    """One way a row can be rejected: a row for which `failed` is true (null: not failed) gets
    `reason`, naming `column`, unless an earlier check of its table already applies."""

    failed: pl.Expr
    reason: str
    column: str


def _split(frame: pl.DataFrame, checks: Sequence[Check], detail: pl.Expr = pl.lit(None)) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split a table's frame (with `_file`, `_row`) by ordered `checks` into (valid rows,
    rejected rows with `_reason`, `_column`, `_detail`: `_to_rejects` makes them reject records;
    `_to_rejects` gives `_detail` its type, so the default null needs none).

    Every check runs once over every row, all in one select (Polars runs them side by side); the
    first failed check of a row, and `detail`, are worked out for the rejected rows only. Most
    rows fail none, and with no rejected row the valid rows are the table itself, not a filtered
    copy of it.
    """
    failed = frame.select([c.failed.fill_null(False).alias(f"_check{i}") for i, c in enumerate(checks)])
    rejected = failed.select(pl.any_horizontal(pl.all())).to_series()
    reason: Any = pl
    column: Any = pl
    for i, c in enumerate(checks):
        reason = reason.when(pl.col(f"_check{i}")).then(pl.lit(c.reason))
        column = column.when(pl.col(f"_check{i}")).then(pl.lit(c.column))
    if not rejected.any():
        # no rows, but the table's columns (a streamed table's records are laid out by every file's
        # columns); no `_reason`..: `_to_rejects` reads them only from rows
        return frame.drop(*ROW_COLS), frame.head(0)
    # every rejected row failed some check, so the when/then chains need no `otherwise`
    bad = pl.concat([frame.filter(rejected), failed.filter(rejected)], how="horizontal").with_columns(
        reason.alias("_reason"), column.alias("_column"), detail.alias("_detail")
    )
    return frame.filter(~rejected).drop(*ROW_COLS), bad.drop(failed.columns)


def canonical_user_id(col: pl.Expr) -> pl.Expr:
    """Stripped; `7.0` -> `7`; empty or blank -> null (see the module docstring)."""
    # one replace that changes only the matching values (a when/then would compute both sides for every row)
    text = col.cast(pl.Utf8).str.strip_chars().str.replace(r"^([+-]?[0-9]+)\.0*$", "${1}")
    return pl.when(text.str.len_chars() > 0).then(text)  # otherwise null


def _scrub_values(values: pl.Series) -> pl.Series:
    """The phrase scrubber over the distinct values of a column, mapped back (nulls stay null)."""
    values = values.cast(pl.Utf8)
    distinct = values.drop_nulls().unique()
    if distinct.len() == 0:
        return values
    scrubbed = normalize_phrases(distinct, MAX_RECORD_FIELD_CHARS)
    return values.replace_strict(distinct, scrubbed)  # every value is in `distinct`; null stays null


def _safe_record_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """A reject's columns as they may be written: no user_id, every text but the ids scrubbed."""
    frame = frame.drop("user_id", strict=False)
    text_cols = [c for c, t in frame.schema.items() if c not in ID_COLUMNS and t in (pl.Utf8, pl.Categorical)]
    return frame.with_columns([_scrub_values(frame.get_column(c)).alias(c) for c in text_cols])


def _withhold_user_id_detail(rejects: pl.DataFrame) -> pl.DataFrame:
    return rejects.with_columns(
        pl.when(pl.col("column") == "user_id").then(pl.lit(USER_ID_WITHHELD)).otherwise(pl.col("detail")).alias("detail")
    )


def safe_unparsed(name: str, unparsed: pl.DataFrame) -> pl.DataFrame:
    """Rejects of lines read.py could not parse into columns, made safe to write: the raw line is
    scrubbed whole, or withheld in a table with user ids (module docstring)."""
    if unparsed.height == 0:
        return unparsed
    if name in USER_TABLES:
        record = pl.lit(None, pl.Utf8)
    else:
        record = _scrub_values(unparsed.get_column("record"))
    return _withhold_user_id_detail(unparsed.with_columns(record.alias("record")))


def _to_rejects(name: str, bad: pl.DataFrame) -> pl.DataFrame:
    if bad.height == 0:
        return empty_rejects()
    data_cols = [c for c in bad.columns if c not in (*ROW_COLS, "_reason", "_column", "_detail")]
    record_frame = _safe_record_frame(bad.select(data_cols))
    records = record_frame.select(pl.struct(pl.all()).struct.json_encode().str.slice(0, MAX_RECORD_CHARS).alias("record")).get_column("record")
    return _withhold_user_id_detail(pl.DataFrame(
        {
            "table": [name] * bad.height,
            "file": bad.get_column("_file"),
            "row": bad.get_column("_row"),
            "column": bad.get_column("_column"),
            "reason": bad.get_column("_reason"),
            "detail": bad.get_column("_detail"),
            "record": records,
        },
        schema=REJECT_SCHEMA,  # casts each column (an all-null `_detail` has no type)
    ))


def withhold_unkept_queries(rejects: pl.DataFrame, query_pins: pl.DataFrame) -> pl.DataFrame:
    """Rejected engagements keep their query only if that (normalised query, pin) passed the
    privacy threshold (is in query_pins); otherwise the record's query becomes null.

    In:  rejects (REJECT_SCHEMA, from validate_tables), query_pins (query, pin_id, ...).
    Out: the same rows, in the same order.
    """
    is_eng = (pl.col("table") == "engagements") & pl.col("record").is_not_null()
    if rejects.filter(is_eng).height == 0:
        return rejects
    kept = set(query_pins.select("query", "pin_id").iter_rows())
    records = rejects.get_column("record").to_list()
    for i in rejects.with_row_index("_i").filter(is_eng).get_column("_i").to_list():
        record = json.loads(records[i])
        if record.get("query") is not None and (record["query"], record.get("pin_id")) not in kept:
            record["query"] = None
            records[i] = json.dumps(record, ensure_ascii=False)
    return rejects.with_columns(pl.Series("record", records, dtype=pl.Utf8))


def _id_checks(*cols: str) -> list[Check]:
    """Null, then empty, ids over the given id columns."""
    return [Check(pl.col(c).is_null(), "null_id", c) for c in cols] + [Check(_blank(c), "empty_id", c) for c in cols]


def canonical_user_ids(values: pl.Series) -> pl.Series:
    """`canonical_user_id` of a column, run only on the values it can change: a user id with a
    `.`, leading or trailing whitespace, or none at all. Most ids are already canonical, and
    three cheap tests over the column cost a fraction of the replace."""
    values = values.cast(pl.Utf8)
    may_change = values.str.contains(".", literal=True) | values.str.contains(r"^\s|\s$") | (values.str.len_bytes() == 0)
    return update_where(values, may_change, lambda ids: pl.select(canonical_user_id(pl.lit(ids))).to_series())


def _canonical_users(name: str, frame: pl.DataFrame) -> pl.DataFrame:
    if name not in USER_TABLES or "user_id" not in frame.columns:
        return frame
    return frame.with_columns(canonical_user_ids(frame.get_column("user_id")).alias("user_id"))


def validate_tables(
    tables: Mapping[str, Table],
    actions: Sequence[str] = ACTIONS,
    *,
    streamed: Mapping[str, Iterable[Table]] | None = None,
    sink: Callable[[str, pl.DataFrame], None] | None = None,
) -> ValidTables:
    """Split each table into valid rows and rejects (see the module docstring for the reasons).

    `actions`: the known actions (the build's `action_weights` names); any other is `unknown_action`.
    `streamed`: saves and/or engagements as one Table per input file, read as this iterates: each
    file's valid rows go to `sink(name, rows)` and are not kept (ValidTables holds None for that
    table), so memory is bounded by the largest file. Rejects, counts and order are exactly those
    of the tables read whole (a file's rejected rows keep its columns until all files are in).
    """
    streamed = dict(streamed or {})
    rejects: list[pl.DataFrame] = [safe_unparsed(name, t.unparsed) for name, t in tables.items()]
    read = {name: t.frame.height + t.unparsed.height for name, t in tables.items()}
    frames = {name: _canonical_users(name, t.frame) for name, t in tables.items()}

    pins, bad = _valid_pins(frames["pins"])
    rejects.append(_to_rejects("pins", bad))
    boards, bad = _valid_boards(frames["boards"])
    rejects.append(_to_rejects("boards", bad))
    pin_ids, board_ids = pins.get_column("pin_id"), boards.get_column("board_id")
    checks = {
        "saves": lambda t: _valid_saves(t, pin_ids, board_ids),
        "engagements": lambda t: _valid_engagements(t, pin_ids, actions),
    }
    valid_frames: dict[str, pl.DataFrame | None] = {"pins": pins, "boards": boards}
    n_valid: dict[str, int] = {}
    users_seen = False
    for name, check in checks.items():
        if name in streamed:
            bad_parts, n_valid[name], read[name] = [], 0, 0
            # two files are checked at once (Polars kernels release the GIL), the results in file order
            files = ordered_map(lambda t, name=name, check=check: (t, check(_canonical_users(name, t.frame))), streamed[name], threads=min(2, pl.thread_pool_size()))
            for table, (rows, bad) in files:
                read[name] += table.frame.height + table.unparsed.height
                rejects.append(safe_unparsed(name, table.unparsed))
                bad_parts.append(bad)
                n_valid[name] += rows.height
                users_seen |= name == "engagements" and has_user_ids(rows)  # any file's rows
                assert sink is not None, "streamed tables need a sink"
                sink(name, rows)
                del rows
            # one record layout for every file, as when the files are read into one frame
            rejects.append(_to_rejects(name, pl.concat(bad_parts, how="diagonal_relaxed") if bad_parts else pl.DataFrame()))
            valid_frames[name] = None
        else:
            valid_frames[name], bad = check(frames[name])
            rejects.append(_to_rejects(name, bad))

    captions = None
    if "captions" in frames:
        captions, bad = _valid_captions(frames["captions"], pin_ids)
        rejects.append(_to_rejects("captions", bad))
    valid_frames["captions"] = captions
    engagements = valid_frames["engagements"]
    users_seen |= engagements is not None and has_user_ids(engagements)  # None: streamed, seen above

    # every part has REJECT_SCHEMA exactly (read.py's unparsed rows too): a strict concat; table, file and row are never null
    rejects_df = pl.concat(rejects).sort(["table", "file", "row"])
    counts: dict[str, dict[str, int]] = {}
    reasons: dict[str, dict[str, int]] = {}
    for name in [*tables, *(n for n in streamed if n not in tables)]:
        n_rej = int(rejects_df.filter(pl.col("table") == name).height)
        frame = valid_frames[name]
        valid = n_valid[name] if frame is None else frame.height  # None: streamed
        if read[name] != valid + n_rej:  # pragma: no cover - an invariant, not an input problem
            raise AssertionError(f"{name}: read {read[name]} != valid {valid} + rejected {n_rej}")
        counts[name] = {"read": read[name], "valid": valid, "rejected": n_rej}
        by_reason = rejects_df.filter(pl.col("table") == name).group_by("reason").len().sort("reason")
        reasons[name] = {r: int(n) for r, n in by_reason.iter_rows()}
    return ValidTables(pins, boards, valid_frames["saves"], valid_frames["engagements"], captions, rejects_df, counts, reasons, users_seen)


def _valid_pins(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    return _split(frame, [*_id_checks("pin_id"), Check(~pl.col("pin_id").is_first_distinct(), "duplicate_pin_id", "pin_id")])


def _valid_boards(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    return _split(frame, [*_id_checks("board_id"), Check(~pl.col("board_id").is_first_distinct(), "duplicate_board_id", "board_id")])


def _valid_saves(frame: pl.DataFrame, pin_ids: pl.Series, board_ids: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
    return _split(frame, [
        *_id_checks("pin_id", "board_id"),
        Check(~pl.col("pin_id").is_in(pin_ids.implode()), "unknown_pin", "pin_id"),
        Check(~pl.col("board_id").is_in(board_ids.implode()), "unknown_board", "board_id"),
    ])


def _valid_engagements(frame: pl.DataFrame, pin_ids: pl.Series, actions: Sequence[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    # an action as written may be padded or capitalised; only those values are cleaned (most are known as they are)
    action = frame.get_column("action").cast(pl.Utf8)
    action = update_where(action, ~action.is_in(list(actions)), lambda s: s.str.strip_chars().str.to_lowercase())
    frame = frame.with_columns(action)
    empty_query = pl.col("query").is_null() | _blank("query")
    unknown_action = ~pl.col("action").is_in(list(actions)) | pl.col("action").is_null()
    return _split(
        frame,
        [
            *_id_checks("pin_id"),
            Check(empty_query, "empty_query", "query"),
            Check(unknown_action, "unknown_action", "action"),
            Check(~pl.col("pin_id").is_in(pin_ids.implode()), "unknown_pin", "pin_id"),
        ],
        pl.when(unknown_action & ~empty_query).then(pl.lit("known actions: " + ", ".join(actions))),  # otherwise null
    )


def _valid_captions(frame: pl.DataFrame, pin_ids: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
    for c in ("pin_id", "image_sha256"):
        if c not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.Utf8).alias(c))
    frame = frame.with_columns(
        # a blank key is no key (null otherwise)
        pl.when(_present("pin_id")).then(pl.col("pin_id")),
        pl.when(_present("image_sha256")).then(pl.col("image_sha256").str.to_lowercase()),
    ).with_columns(  # a second context: the key must see the cleaned pin_id / image_sha256 above
        pl.coalesce(pl.lit("pin:") + pl.col("pin_id"), pl.lit("sha:") + pl.col("image_sha256")).alias("_key"),
    )
    captions, bad = _split(frame, [
        Check(pl.col("_key").is_null(), "null_id", "pin_id"),
        Check(pl.col("caption").is_null() | _blank("caption"), "empty_caption", "caption"),
        Check(pl.col("pin_id").is_not_null() & ~pl.col("pin_id").is_in(pin_ids.implode()), "unknown_pin", "pin_id"),
        Check(~pl.col("_key").is_first_distinct(), "duplicate_caption", "pin_id"),
    ])
    return captions.drop("_key"), bad.drop("_key")
