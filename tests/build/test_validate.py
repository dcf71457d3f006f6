"""validate_tables: every reject reason with its table, file, row and column; read = valid + rejected."""

from __future__ import annotations

import json

import polars as pl
import pytest
from conftest import small_tables, write_table

from pinfeatures.build.read import read_table
from pinfeatures.build.validate import validate_tables
from pinfeatures.contracts import REJECT_SCHEMA


@pytest.fixture()
def tables(tmp_path):
    pins = pl.DataFrame(
        {
            "pin_id": ["p1", None, "", "  ", "p2", "p2", "p3", " p4 "],
            "title": ["one", "null id", "empty id", "blank id", "first p2", "second p2", "three", "four"],
            "description": [None] * 8,
            "image": [None] * 8,
        }
    )
    boards = pl.DataFrame({"board_id": ["b1", None, "", "b2", "b2"], "title": ["Cakes", "x", "y", "first b2", "Mail anna@example.com"]})
    saves = pl.DataFrame(
        {
            "pin_id": ["p1", "p9", "p1", None, "p2", "", "p4"],
            "board_id": ["b1", "b1", "b9", "b1", None, "b2", "b2"],
        }
    )
    engagements = pl.DataFrame(
        {
            "query": ["cake", "cake", "", "  ", None, "cake", "cake", "cake", "cake", "Mail anna@example.com", "cake", "cake"],
            "pin_id": ["p1", "p1", "p1", "p1", "p1", "p9", None, "", "p1", "p1", "p3", "p1"],
            "action": ["click", " CLICK ", "click", "click", "click", "click", "click", "click", "purchase", "purchase", None, "Save"],
        }
    )
    paths = {
        "pins": write_table(pins, tmp_path / "pins", "parquet"),
        "boards": write_table(boards, tmp_path / "boards", "csv"),
        "saves": write_table(saves, tmp_path / "saves", "parquet"),
        "engagements": write_table(engagements, tmp_path / "engagements", "jsonl"),
    }
    return {name: read_table(path, name) for name, path in paths.items()}, paths


def rejects_of(valid, table):
    return [
        (r["row"], r["column"], r["reason"])
        for r in valid.rejects.filter(pl.col("table") == table).sort("row").iter_rows(named=True)
    ]


def test_every_reject_reason(tables):
    read, paths = tables
    valid = validate_tables(read)
    assert dict(valid.rejects.schema) == REJECT_SCHEMA

    assert rejects_of(valid, "pins") == [(2, "pin_id", "null_id"), (3, "pin_id", "empty_id"), (4, "pin_id", "empty_id"), (6, "pin_id", "duplicate_pin_id")]
    # the first row of a duplicate id is kept; ids are stripped
    assert valid.pins.select("pin_id", "title").rows() == [("p1", "one"), ("p2", "first p2"), ("p3", "three"), ("p4", "four")]

    # boards.csv: the row is the file line, the header being line 1
    assert rejects_of(valid, "boards") == [(3, "board_id", "null_id"), (4, "board_id", "empty_id"), (6, "board_id", "duplicate_board_id")]
    assert valid.boards.select("board_id", "title").rows() == [("b1", "Cakes"), ("b2", "first b2")]

    assert rejects_of(valid, "saves") == [
        (2, "pin_id", "unknown_pin"),
        (3, "board_id", "unknown_board"),
        (4, "pin_id", "null_id"),
        (5, "board_id", "null_id"),
        (6, "pin_id", "empty_id"),
    ]
    assert valid.saves.select("pin_id", "board_id").rows() == [("p1", "b1"), ("p4", "b2")]

    assert rejects_of(valid, "engagements") == [
        (3, "query", "empty_query"),
        (4, "query", "empty_query"),
        (5, "query", "empty_query"),
        (6, "pin_id", "unknown_pin"),
        (7, "pin_id", "null_id"),
        (8, "pin_id", "empty_id"),
        (9, "action", "unknown_action"),
        (10, "action", "unknown_action"),
        (11, "action", "unknown_action"),
    ]
    # ' CLICK ' and 'Save' are normalised, not rejected
    assert valid.engagements.select("pin_id", "action").rows() == [("p1", "click"), ("p1", "click"), ("p1", "save")]

    # file names are the files read; the detail names the known actions
    for table, path in paths.items():
        files = set(valid.rejects.filter(pl.col("table") == table).get_column("file").to_list())
        assert files == {str(path)}
    detail = valid.rejects.filter(pl.col("reason") == "unknown_action").get_column("detail").to_list()
    assert all("known actions: impression, click, closeup, save, long_click" == d for d in detail)

    assert valid.counts == {
        "pins": {"read": 8, "valid": 4, "rejected": 4},
        "boards": {"read": 5, "valid": 2, "rejected": 3},
        "saves": {"read": 7, "valid": 2, "rejected": 5},
        "engagements": {"read": 12, "valid": 3, "rejected": 9},
    }
    assert valid.reject_reasons["engagements"] == {"empty_id": 1, "empty_query": 3, "null_id": 1, "unknown_action": 3, "unknown_pin": 1}
    assert valid.reject_reasons["pins"] == {"duplicate_pin_id": 1, "empty_id": 2, "null_id": 1}


def test_reject_records_are_json_and_scrubbed(tables):
    read, _ = tables
    valid = validate_tables(read)
    rec = valid.rejects.filter((pl.col("table") == "engagements") & (pl.col("row") == 10)).get_column("record")[0]
    assert json.loads(rec) == {"query": "mail", "pin_id": "p1", "action": "purchase"}
    rec = valid.rejects.filter((pl.col("table") == "boards") & (pl.col("row") == 6)).get_column("record")[0]
    assert json.loads(rec) == {"board_id": "b2", "title": "mail", "description": None} or json.loads(rec) == {"board_id": "b2", "title": "mail"}
    rec = valid.rejects.filter((pl.col("table") == "pins") & (pl.col("row") == 6)).get_column("record")[0]
    assert json.loads(rec)["title"] == "second p2"


def test_jsonl_malformed_and_bad_value_rejects(tmp_path):
    lines = [
        '{"pin_id": "p1", "title": "ok", "description": "", "image": null}',
        "{not json",
        "",  # blank line: not a row, but later rows keep their line numbers
        '["a", "list"]',
        '{"pin_id": "p2", "title": {"nested": 1}, "description": "", "image": null}',
        '{"pin_id": "p3", "title": "three", "description": ["x"], "image": null}',
        '{"pin_id": "p4", "title": "four", "description": "d", "image": "i.jpg", "extra": {"ok": true}}',
    ]
    path = tmp_path / "pins.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    table = read_table(path, "pins")
    assert table.frame.get_column("pin_id").to_list() == ["p1", "p4"]
    assert table.frame.get_column("_row").to_list() == [1, 7]
    bad = table.unparsed.sort("row")
    assert bad.select("row", "column", "reason").rows() == [
        (2, None, "malformed_json"),
        (4, None, "malformed_json"),
        (5, "title", "bad_value"),
        (6, "description", "bad_value"),
    ]
    assert set(bad.get_column("file")) == {str(path)}
    assert bad.get_column("record")[0] == "{not json"

    others = {
        "boards": read_table(write_table(pl.DataFrame({"board_id": ["b"], "title": ["t"]}), tmp_path / "boards", "csv"), "boards"),
        "saves": read_table(write_table(pl.DataFrame({"pin_id": ["p1"], "board_id": ["b"]}), tmp_path / "saves", "csv"), "saves"),
        "engagements": read_table(write_table(pl.DataFrame({"query": ["q"], "pin_id": ["p4"], "action": ["click"]}), tmp_path / "eng", "csv"), "engagements"),
    }
    valid = validate_tables({"pins": table, **others})
    assert valid.counts["pins"] == {"read": 6, "valid": 2, "rejected": 4}
    assert valid.reject_reasons["pins"] == {"bad_value": 2, "malformed_json": 2}


def test_captions_reasons(tmp_path):
    pins = read_table(write_table(pl.DataFrame({"pin_id": ["p1", "p2"], "title": ["a", "b"], "description": ["", ""], "image": ["x", "y"]}), tmp_path / "pins", "parquet"), "pins")
    boards = read_table(write_table(pl.DataFrame({"board_id": ["b"], "title": ["t"]}), tmp_path / "boards", "csv"), "boards")
    saves = read_table(write_table(pl.DataFrame({"pin_id": ["p1"], "board_id": ["b"]}), tmp_path / "saves", "csv"), "saves")
    eng = read_table(write_table(pl.DataFrame({"query": ["q"], "pin_id": ["p1"], "action": ["click"]}), tmp_path / "eng", "csv"), "engagements")
    captions = pl.DataFrame(
        {
            "pin_id": ["p1", None, "p2", "p9", "p1", None, None, "  "],
            "image_sha256": [None, "ABC", None, None, None, "abc", None, None],
            "caption": ["a cat", "by hash", "  ", "unknown", "second for p1", "dup hash (case-folded)", "no key", "blank key"],
        }
    )
    cap = read_table(write_table(captions, tmp_path / "captions", "parquet"), "captions")
    valid = validate_tables({"pins": pins, "boards": boards, "saves": saves, "engagements": eng, "captions": cap})
    assert rejects_of(valid, "captions") == [
        (3, "caption", "empty_caption"),
        (4, "pin_id", "unknown_pin"),
        (5, "pin_id", "duplicate_caption"),
        (6, "pin_id", "duplicate_caption"),
        (7, "pin_id", "null_id"),
        (8, "pin_id", "null_id"),
    ]
    assert valid.captions.select("pin_id", "image_sha256", "caption").rows() == [("p1", None, "a cat"), (None, "abc", "by hash")]
    assert valid.counts["captions"] == {"read": 8, "valid": 2, "rejected": 6}


def small_read(tmp_path, **extra):
    """The conftest's small valid tables, read back from Parquet, plus any `extra` tables."""
    tables = {**small_tables(), **extra}
    return {name: read_table(write_table(frame, tmp_path / name, "parquet"), name) for name, frame in tables.items()}


def test_captions_by_sha256_are_deduplicated_by_sha256_not_pin_id(tmp_path):
    # three captions keyed by image sha256 alone (pin_id null): two different images stay two valid rows,
    # the same image again (its hash in another case) is the duplicate
    captions = pl.DataFrame(
        {"pin_id": [None, None, None], "image_sha256": ["aa11", "BB22", "AA11"], "caption": ["one", "two", "one again"]},
        schema={"pin_id": pl.Utf8, "image_sha256": pl.Utf8, "caption": pl.Utf8},
    )
    valid = validate_tables(small_read(tmp_path, captions=captions))
    assert valid.captions.select("pin_id", "image_sha256", "caption").rows() == [(None, "aa11", "one"), (None, "bb22", "two")]
    assert rejects_of(valid, "captions") == [(3, "pin_id", "duplicate_caption")]
    assert valid.counts["captions"] == {"read": 3, "valid": 2, "rejected": 1}


def test_engagement_with_two_faults_gets_the_first_reason_in_the_documented_order(tmp_path):
    # order: null_id, empty_id, empty_query, unknown_action, unknown_pin (the module docstring)
    engagements = pl.DataFrame(
        {
            "query": ["cake", "cake", "", "cake", None],
            "pin_id": ["p9", "p1", "p9", None, ""],
            "action": ["purchase", "purchase", "click", "purchase", "purchase"],
            "user_id": ["u1"] * 5,
        }
    )
    valid = validate_tables(small_read(tmp_path, engagements=engagements))
    assert rejects_of(valid, "engagements") == [
        (1, "action", "unknown_action"),  # unknown pin and unknown action: the action is named
        (2, "action", "unknown_action"),
        (3, "query", "empty_query"),  # empty query and unknown pin
        (4, "pin_id", "null_id"),  # null pin and unknown action
        (5, "pin_id", "empty_id"),  # empty pin, null query and unknown action
    ]


def test_streamed_files_give_the_rows_rejects_and_counts_of_the_whole_table(tmp_path):
    """saves and engagements validated one file at a time (the build's way): the same rejects,
    records, counts and valid rows as the files read into one table, though the files differ in
    columns (an extra column, a missing optional one), in format, and in which hold bad rows."""
    from pinfeatures.build.read import read_located, _table_file

    parts = tmp_path / "engagements"
    parts.mkdir()
    pl.DataFrame({"query": ["cake", "", "cake"], "pin_id": ["p1", "p1", "p9"], "action": ["click", "click", "click"],
                  "user_id": ["u1", "u2", "u3"], "country": ["FR", "DE", None]}).write_parquet(parts / "a.parquet")
    pl.DataFrame({"query": ["pie", "pie"], "pin_id": ["p1", "p2"], "action": ["save", "save"]}).write_parquet(parts / "b.parquet")  # no user_id, all valid
    pl.DataFrame({"query": ["tart", "Mail anna@example.com"], "pin_id": ["p2", "p1"], "action": ["purchase", "CLICK"],
                  "mood": ["happy", "sad"], "user_id": ["u4", "7.0"]}).write_parquet(parts / "c.parquet")
    saves_dir = tmp_path / "saves"
    saves_dir.mkdir()
    pl.DataFrame({"pin_id": ["p1", "p9"], "board_id": ["b1", "b1"]}).write_parquet(saves_dir / "1.parquet")
    pl.DataFrame({"pin_id": ["p2", None], "board_id": ["b9", "b1"], "saved_at": [1, 2]}).write_parquet(saves_dir / "2.parquet")
    base = small_read(tmp_path)
    whole = {**base, "saves": read_table(saves_dir, "saves"), "engagements": read_table(parts, "engagements")}
    expected = validate_tables(whole)

    def each_file(name, folder):
        tf = _table_file(name, folder)
        for path in tf.files:
            yield read_located(type(tf)(tf.name, tf.path, tf.format, [path]))

    got_rows: dict[str, list[pl.DataFrame]] = {"saves": [], "engagements": []}
    streamed = validate_tables({k: base[k] for k in ("pins", "boards")}, streamed={"saves": each_file("saves", saves_dir), "engagements": each_file("engagements", parts)},
                               sink=lambda name, rows: got_rows[name].append(rows))
    assert streamed.saves is None and streamed.engagements is None
    assert streamed.rejects.equals(expected.rejects)
    assert (streamed.counts, streamed.reject_reasons) == (expected.counts, expected.reject_reasons)
    assert streamed.users_seen is expected.users_seen is True
    assert [len(v) for v in got_rows.values()] == [2, 3]  # one hand-over per file, an all-valid one included
    for name in ("saves", "engagements"):
        columns = ["pin_id", "board_id"] if name == "saves" else ["query", "pin_id", "action", "user_id"]
        rows = pl.concat([f.select(pl.col(c) if c in f.columns else pl.lit(None, pl.Utf8).alias(c) for c in columns) for f in got_rows[name]])
        assert rows.equals(getattr(expected, name).select(columns)), name
    assert expected.counts["engagements"] == {"read": 7, "valid": 4, "rejected": 3}
    # a record has every column of the files read as one table: the first file's rejects name `mood`, null
    assert json.loads(expected.rejects.filter(pl.col("table") == "engagements").get_column("record")[0])["mood"] is None


def test_valid_rows_keep_only_the_tables_columns_and_users_seen(tmp_path):
    # with some rows rejected (the filtered path) and with none, the valid frames hold the input's columns
    # alone (no _file/_row, no _reason/_column/_detail); without user ids no user is seen, whatever saves hold
    t = small_tables()
    t["pins"] = pl.concat([t["pins"], t["pins"].head(1)])  # a duplicate: some pins rejected
    t["engagements"] = t["engagements"].drop("user_id")
    valid = validate_tables(small_read(tmp_path, **t))
    assert valid.pins.columns == ["pin_id", "title", "description", "image"] and valid.pins.height == 4
    assert valid.boards.columns == ["board_id", "title"]
    assert valid.saves.columns == ["pin_id", "board_id", "user_id"]
    assert valid.engagements.columns == ["query", "pin_id", "action"]
    assert valid.users_seen is False
    assert validate_tables(small_read(tmp_path / "with_users")).users_seen is True


def test_streamed_engagements_without_user_ids_and_with_a_malformed_line(tmp_path):
    # a streamed file's unparsed line counts as read and keeps no record (engagements hold user ids and
    # queries); engagements without a user id are no users seen, even when saves have them
    base = small_read(tmp_path)
    (tmp_path / "e.jsonl").write_text('{"query": "cake", "pin_id": "p1", "action": "click"}\n{oops user u-secret\n', encoding="utf-8")
    got = []
    valid = validate_tables({k: base[k] for k in ("pins", "boards", "saves")}, streamed={"engagements": iter([read_table(tmp_path / "e.jsonl", "engagements")])},
                            sink=lambda name, rows: got.append(rows.height))
    assert got == [1] and valid.users_seen is False
    assert valid.counts["engagements"] == {"read": 2, "valid": 1, "rejected": 1}
    assert valid.rejects.filter(pl.col("table") == "engagements").select("row", "reason", "record").rows() == [(2, "malformed_json", None)]


def test_engagement_detail_names_the_known_actions_only_for_an_unknown_action(tmp_path):
    engagements = pl.DataFrame({"query": ["cake", "cake", "", "cake"], "pin_id": ["p9", "p1", "p1", "p1"], "action": ["click", "buy", "buy", "click"]})
    valid = validate_tables(small_read(tmp_path, engagements=engagements), actions=("click", "save"))
    rejects = valid.rejects.filter(pl.col("table") == "engagements").sort("row")
    assert rejects.select("row", "reason", "detail").rows() == [
        (1, "unknown_pin", None),
        (2, "unknown_action", "known actions: click, save"),
        (3, "empty_query", None),  # an unknown action too, but the empty query is its reason
    ]


@pytest.mark.parametrize("columns", [("image_sha256", "caption"), ("pin_id", "caption")])
def test_captions_with_one_key_column(tmp_path, columns):
    # captions need pin_id or image_sha256, not both: the missing one is null; a blank hash is no key
    captions = pl.DataFrame({"pin_id": ["p1", "  ", "p2"], "image_sha256": ["AB12", "  ", "cd34"], "caption": ["one", "blank key", "two"]}).select(columns)
    valid = validate_tables(small_read(tmp_path, captions=captions))
    key = "pin_id" if "pin_id" in columns else "image_sha256"
    want = [("p1", None), ("p2", None)] if key == "pin_id" else [(None, "ab12"), (None, "cd34")]
    assert valid.captions.select("pin_id", "image_sha256").rows() == want
    assert dict(valid.captions.schema) == {"pin_id": pl.Utf8, "image_sha256": pl.Utf8, "caption": pl.Utf8}  # the missing key is a text column
    assert rejects_of(valid, "captions") == [(2, "pin_id", "null_id")]
    # the record is the row as cleaned (a blank key is null, the missing one too), without validate's own key column
    record = json.loads(valid.rejects.filter(pl.col("table") == "captions").get_column("record")[0])
    assert record == {"pin_id": None, "image_sha256": None, "caption": "blank key"}


def test_a_caption_with_a_null_pin_and_a_blank_hash_has_no_key(tmp_path):
    captions = pl.DataFrame({"pin_id": [None, None], "image_sha256": ["  ", "ab12"], "caption": ["no key", "by hash"]},
                            schema={"pin_id": pl.Utf8, "image_sha256": pl.Utf8, "caption": pl.Utf8})
    valid = validate_tables(small_read(tmp_path, captions=captions))
    assert rejects_of(valid, "captions") == [(1, "pin_id", "null_id")]
    assert valid.captions.select("image_sha256", "caption").rows() == [("ab12", "by hash")]


def test_reject_records_keep_ids_as_written_numbers_as_numbers_and_cap_text_fields(tmp_path):
    # ids name content (kept as written, not folded); a number column stays a number; other text is
    # folded, scrubbed and capped at MAX_RECORD_FIELD_CHARS; the whole record at MAX_RECORD_CHARS
    from pinfeatures.build.validate import MAX_RECORD_CHARS, MAX_RECORD_FIELD_CHARS

    saves = pl.DataFrame({"pin_id": ["P404", "p1"], "board_id": ["B1", "b9"], "n": [5, 6], "note": ["Call Anna  ", "x" * 3000]})
    valid = validate_tables(small_read(tmp_path, saves=saves))
    records = [json.loads(r) for r in valid.rejects.filter(pl.col("table") == "saves").sort("row").get_column("record")]
    assert records[0] == {"pin_id": "P404", "board_id": "B1", "n": 5, "note": "call anna"}
    assert records[1]["note"] == "x" * MAX_RECORD_FIELD_CHARS and (records[1]["pin_id"], records[1]["n"]) == ("p1", 6)
    wide = pl.DataFrame({"pin_id": ["p9"], "board_id": ["b1"], **{f"c{i}": ["word " * 500] for i in range(12)}})
    rec = validate_tables(small_read(tmp_path / "wide", saves=wide)).rejects.filter(pl.col("table") == "saves").get_column("record")[0]
    assert len(rec) == MAX_RECORD_CHARS and rec.startswith('{"pin_id":"p9","board_id":"b1","c0":"word word')


def test_withhold_unkept_queries():
    from pinfeatures.build.validate import withhold_unkept_queries

    rejects = pl.DataFrame(
        {
            "table": ["engagements", "engagements", "engagements", "engagements", "saves", "engagements"],
            "file": ["e"] * 6, "row": [1, 2, 3, 4, 1, 5], "column": ["action"] * 6, "reason": ["unknown_action"] * 6, "detail": [None] * 6,
            "record": [
                '{"query": "crème brûlée", "pin_id": "p1", "action": "buy"}',  # (query, pin) kept: stays
                '{"query": "crème brûlée", "pin_id": "p2", "action": "achète"}',  # the query kept with another pin only
                '{"query": "rare query", "pin_id": "p1", "action": "buy"}',
                '{"query": null, "pin_id": "p1", "action": "buy"}',
                '{"query": "rare query", "pin_id": "p1"}',  # not an engagement: left alone
                None,  # a malformed line: no record
            ],
        },
        schema=REJECT_SCHEMA,
    )
    query_pins = pl.DataFrame({"query": ["crème brûlée", "other"], "pin_id": ["p1", "p2"], "score": [1.0, 2.0]})
    out = withhold_unkept_queries(rejects, query_pins)
    assert out.drop("record").equals(rejects.drop("record"))
    assert out.get_column("record").to_list() == [
        '{"query": "crème brûlée", "pin_id": "p1", "action": "buy"}',
        '{"query": null, "pin_id": "p2", "action": "achète"}',
        '{"query": null, "pin_id": "p1", "action": "buy"}',
        '{"query": null, "pin_id": "p1", "action": "buy"}',
        '{"query": "rare query", "pin_id": "p1"}',
        None,
    ]
    one = rejects.filter(pl.col("row") == 3)
    assert withhold_unkept_queries(one, query_pins).get_column("record").to_list() == ['{"query": null, "pin_id": "p1", "action": "buy"}']
    no_engagements = rejects.filter(pl.col("table") == "saves")
    assert withhold_unkept_queries(no_engagements, query_pins.head(0)).equals(no_engagements)


def test_a_single_rejected_text_value_is_scrubbed_too(tmp_path):
    # one rejected row: each text column holds one distinct value, scrubbed as many are
    saves = pl.DataFrame({"pin_id": ["P404"], "board_id": ["B1"], "note": ["Mail anna@example.com  "]})
    valid = validate_tables(small_read(tmp_path, saves=saves))
    records = valid.rejects.filter(pl.col("table") == "saves").get_column("record").to_list()
    assert [json.loads(r) for r in records] == [{"pin_id": "P404", "board_id": "B1", "note": "mail"}]


def test_a_table_streamed_from_no_file_is_read_empty(tmp_path):
    base = small_read(tmp_path)
    handed_over = []
    valid = validate_tables({k: base[k] for k in ("pins", "boards", "saves")}, streamed={"engagements": iter([])},
                            sink=lambda name, rows: handed_over.append(name))
    assert handed_over == [] and valid.engagements is None and valid.users_seen is False
    assert valid.counts["engagements"] == {"read": 0, "valid": 0, "rejected": 0}
    assert valid.reject_reasons["engagements"] == {}
    assert valid.rejects.filter(pl.col("table") == "engagements").height == 0


def test_users_are_seen_in_any_streamed_file_not_only_the_last(tmp_path):
    base = small_read(tmp_path)
    e = small_tables()["engagements"]
    (tmp_path / "e").mkdir()
    e.write_parquet(tmp_path / "e" / "1.parquet")
    e.drop("user_id").write_parquet(tmp_path / "e" / "2.parquet")
    files = [read_table(tmp_path / "e" / f, "engagements") for f in ("1.parquet", "2.parquet")]
    valid = validate_tables({k: base[k] for k in ("pins", "boards", "saves")}, streamed={"engagements": iter(files)}, sink=lambda name, rows: None)
    assert valid.users_seen is True and valid.captions is None
    assert valid.counts["engagements"] == {"read": 2 * e.height, "valid": 2 * e.height, "rejected": 0}
