"""sources: finding tables in a folder or by flag, every format, schema checks and id casting."""

from __future__ import annotations

import json

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import build, small_tables, write_inputs, write_table

from pinfeatures.build.read import MAX_EXTRA_COLUMNS, input_tables, locate, read_table
from pinfeatures.build.settings import BuildSettings
from pinfeatures.errors import InputError

FEATURE_KEYS = ["pin_id", "title", "description", "boards", "queries", "language"]


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl", "parts"])
def test_read_each_format(tmp_path, fmt):
    tables = small_tables()
    write_inputs(tmp_path, tables, fmt)
    tf = locate("pins", tmp_path, None, required=True)
    assert tf.format == ("parquet" if fmt == "parts" else fmt)
    t = read_table(tf.path, "pins")
    assert t.frame.get_column("pin_id").to_list() == ["p1", "p2", "p3", "p4"]
    assert t.frame.get_column("title").to_list() == tables["pins"].get_column("title").to_list()
    rows = t.frame.get_column("_row").to_list()
    # 1-based within each file: the Parquet row, the JSONL line, the CSV line (its header is line 1)
    assert rows == {"parts": [1, 2, 1, 2], "csv": [2, 3, 4, 5]}.get(fmt, [1, 2, 3, 4])
    assert t.unparsed.height == 0
    if fmt == "parts":
        assert [p.name for p in tf.files] == ["part-000.parquet", "part-001.parquet"]
        assert t.frame.get_column("_file").cast(pl.Utf8).str.ends_with("part-001.parquet").to_list() == [False, False, True, True]


def test_all_formats_and_per_table_flags_give_the_same_features(tmp_path):
    """Parquet, CSV, JSONL, folders of parts and per-table flags build identical features and texts."""
    tables = small_tables()
    results = {}
    for fmt in ("parquet", "csv", "jsonl", "parts"):
        inp = write_inputs(tmp_path / f"in_{fmt}", tables, fmt)
        out = tmp_path / f"out_{fmt}"
        build(out, input=str(inp))
        results[fmt] = (pl.read_parquet(out / "features.parquet").select(FEATURE_KEYS), pl.read_parquet(out / "texts.parquet"))
    # mixed: each table from its own flag, in a different format, no --input
    paths = {
        "pins": write_table(tables["pins"], tmp_path / "mixed" / "a" / "pins", "jsonl"),
        "boards": write_table(tables["boards"], tmp_path / "mixed" / "b" / "my_boards", "csv"),
        "saves": write_table(tables["saves"], tmp_path / "mixed" / "c" / "saves_parts", "parts"),
        "engagements": write_table(tables["engagements"], tmp_path / "mixed" / "d" / "log", "parquet"),
    }
    build(tmp_path / "out_mixed", **{k: str(v) for k, v in paths.items()})
    results["mixed"] = (pl.read_parquet(tmp_path / "out_mixed" / "features.parquet").select(FEATURE_KEYS), pl.read_parquet(tmp_path / "out_mixed" / "texts.parquet"))

    ref_features, ref_texts = results["parquet"]
    assert ref_features.get_column("boards").to_list() == [["cakes", "desserts"], ["garden"], ["desserts"], []]
    assert ref_features.get_column("queries").to_list() == [["birthday cake", "chocolate cake"], ["garden"], ["tarte"], []]
    assert ref_features.get_column("description")[0] == "The best moist chocolate cake & frosting for birthdays"
    for fmt, (features, texts) in results.items():
        assert features.equals(ref_features), fmt
        assert texts.equals(ref_texts), fmt


def test_flag_overrides_the_table_in_the_input_folder(tmp_path):
    tables = small_tables()
    write_inputs(tmp_path / "in", tables, "parquet")
    other = write_table(tables["boards"].with_columns(pl.lit("Other").alias("title")), tmp_path / "elsewhere" / "b", "csv")
    cfg = BuildSettings(input=str(tmp_path / "in"), boards=str(other))
    found = input_tables(cfg)
    assert found["boards"].path == other and found["pins"].path == tmp_path / "in" / "pins.parquet"
    assert "captions" not in found


def test_locate_errors(tmp_path):
    with pytest.raises(InputError, match="input folder not found"):
        locate("pins", tmp_path / "nope", None, required=True)
    with pytest.raises(InputError, match="table 'pins' not found"):
        locate("pins", tmp_path, None, required=True)
    assert locate("captions", tmp_path, None, required=False) is None
    write_table(small_tables()["pins"], tmp_path / "pins", "csv")
    write_table(small_tables()["pins"], tmp_path / "pins", "parquet")
    with pytest.raises(InputError, match="more than once: pins.parquet, pins.csv"):
        locate("pins", tmp_path, None, required=True)
    (tmp_path / "pins.txt").write_text("x")
    with pytest.raises(InputError, match="unknown format '.txt'"):
        locate("pins", None, tmp_path / "pins.txt", required=True)
    (tmp_path / "empty_parts").mkdir()
    with pytest.raises(InputError, match="holds no .parquet parts"):
        locate("pins", None, tmp_path / "empty_parts", required=True)
    with pytest.raises(InputError, match="not found"):
        locate("pins", None, tmp_path / "missing.parquet", required=True)


def test_missing_column_names_file_and_column(tmp_path):
    path = write_table(small_tables()["pins"].drop("description"), tmp_path / "pins", "parquet")
    with pytest.raises(InputError) as err:
        read_table(path, "pins")
    msg = str(err.value)
    assert msg.startswith(str(path)) and "missing required column(s) 'description'" in msg and "table 'pins'" in msg
    assert err.value.file == str(path)

    path = write_table(pl.DataFrame({"pin_id": ["p"], "board": ["b"]}), tmp_path / "saves", "csv")
    with pytest.raises(InputError, match="missing required column\\(s\\) 'board_id'"):
        read_table(path, "saves")

    path = write_table(pl.DataFrame({"model": ["m"], "caption": ["c"]}), tmp_path / "captions", "parquet")
    with pytest.raises(InputError, match="needs one of the columns pin_id or image_sha256"):
        read_table(path, "captions")


@pytest.mark.parametrize(
    "column, values, expected",
    [
        ("title", pa.array([["a"], ["b"]]), "expected text (string), found type List"),
        ("pin_id", pa.array([{"x": 1}, {"x": 2}]), "expected a string or integer id, found type Struct"),
        ("pin_id", pa.array([["p"], ["q"]]), "expected a string or integer id, found type List"),
    ],
)
def test_nested_column_types_are_rejected(tmp_path, column, values, expected):
    base = {"pin_id": pa.array(["p1", "p2"]), "title": pa.array(["a", "b"]), "description": pa.array(["", ""]), "image": pa.array([None, None], pa.string())}
    base[column] = values
    path = tmp_path / "pins.parquet"
    pq.write_table(pa.table(base), path)
    with pytest.raises(InputError) as err:
        read_table(path, "pins")
    assert err.value.file == str(path) and err.value.column == column
    assert expected in str(err.value) and f"column '{column}'" in str(err.value)


def test_numeric_ids_become_strings(tmp_path):
    frame = pl.DataFrame({"pin_id": [1, 2, None], "board_id": [10.0, 20.0, 30.0], "user_id": [7, 8, 9]})
    path = write_table(frame, tmp_path / "saves", "parquet")
    t = read_table(path, "saves")
    assert t.frame.get_column("pin_id").to_list() == ["1", "2", None]
    assert t.frame.get_column("board_id").to_list() == ["10", "20", "30"]  # floats written by pandas
    assert t.frame.get_column("user_id").to_list() == ["7", "8", "9"]


def rejects(t) -> list[tuple]:
    return t.unparsed.sort("row").select("table", "file", "row", "column", "reason", "detail").rows()


def test_inexact_float_ids_are_rejects_of_their_rows(tmp_path):
    """A float id column (pandas) keeps its integral ids; a fractional, infinite or past-2^53 id rejects its row only."""
    frame = pl.DataFrame({"pin_id": [1.0, 2.5, None, float("nan"), float("inf"), 2.0**60, 3.0], "board_id": ["a"] * 7})
    path = write_table(frame, tmp_path / "saves", "parquet")
    t = read_table(path, "saves")
    assert t.frame.select("pin_id", "_row").rows() == [("1", 1), (None, 3), (None, 4), ("3", 7)]  # NaN: a missing id
    f = str(path)
    assert rejects(t) == [
        ("saves", f, 2, "pin_id", "bad_value", "'pin_id' is a fractional number (2.5), expected a string or integer id"),
        ("saves", f, 5, "pin_id", "bad_value", "'pin_id' is a non-finite number, expected a string or integer id"),
        ("saves", f, 6, "pin_id", "bad_value", "'pin_id' is a float too large to be an exact id, expected a string or integer id"),
    ]
    assert json.loads(t.unparsed.sort("row").get_column("record")[0]) == {"pin_id": 2.5, "board_id": "a"}


def test_bad_jsonl_ids_are_rejects_naming_the_file_line(tmp_path):
    path = tmp_path / "saves.jsonl"
    path.write_text(
        "\n".join([
            '{"pin_id": 1, "board_id": "b"}',
            "",  # a blank line still counts: rows are file lines
            '{"pin_id": 1.5, "board_id": "b"}',
            '{"pin_id": 7.0, "board_id": 8, "user_id": 9.0}',
            '{"pin_id": true, "board_id": "b"}',
            '{"pin_id": "p", "board_id": 1e300}',
            '{"pin_id": "p", "board_id": "b", "user_id": Infinity}',
            '{"pin_id": NaN, "board_id": "b"}',
            '{"pin_id": 12345678901234567890123, "board_id": "b"}',
        ]) + "\n",
        encoding="utf-8",
    )
    t = read_table(path, "saves")
    assert t.frame.select("pin_id", "board_id", "user_id", "_row").rows() == [
        ("1", "b", None, 1), ("7", "8", "9", 4), (None, "b", None, 8), ("12345678901234567890123", "b", None, 9),
    ]
    f = str(path)
    assert rejects(t) == [
        ("saves", f, 3, "pin_id", "bad_value", "'pin_id' is a fractional number (1.5), expected a string or integer id"),
        ("saves", f, 5, "pin_id", "bad_value", "'pin_id' is a JSON boolean (true), expected a string or integer id"),
        ("saves", f, 6, "board_id", "bad_value",
         "'board_id' is a float too large to be an exact id (1e+300): write it as an integer or a string, expected a string or integer id"),
        ("saves", f, 7, "user_id", "bad_value", "'user_id' is a non-finite number (inf), expected a string or integer id"),
    ]


def test_deep_nesting_and_huge_numbers_reject_their_line_only(tmp_path):
    path = tmp_path / "pins.jsonl"
    deep = "[" * 100_000 + "]" * 100_000
    deep_obj = '{"pin_id": "p2", "title": "t", "description": "", "image": null, "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    lines = [
        '{"pin_id": "p1", "title": "one", "description": "", "image": null}',
        deep,
        deep_obj,
        '{"pin_id": "p3", "title": ' + "9" * 5000 + ', "description": "", "image": null}',
        '{"pin_id": "p4", "title": "four", "description": "", "image": null}',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    t = read_table(path, "pins")
    assert t.frame.select("pin_id", "_row").rows() == [("p1", 1), ("p4", 5)]
    bad = t.unparsed.sort("row")
    assert bad.select("row", "column", "reason").rows() == [(2, None, "malformed_json"), (3, None, "malformed_json"), (4, None, "malformed_json")]
    assert bad.get_column("detail").to_list()[:2] == ["nested too deeply", "nested too deeply"]
    assert "4300" in bad.get_column("detail")[2]  # Python's limit on integer digits
    assert bad.get_column("record").str.len_chars().to_list() == [2000, 2000, 2000]


def test_lone_surrogate_rejects_that_line_only(tmp_path):
    path = tmp_path / "pins.jsonl"
    lines = [
        '{"pin_id": "p1", "title": "one \\ud83d\\ude00", "description": "", "image": null}',  # a valid pair: an emoji
        '{"pin_id": "p2", "title": "lone \\ud800 high", "description": "", "image": null}',
        '{"pin_id": "p3", "title": "t", "description": "", "image": null, "note": ["\\udfff"]}',
        '{"pin_id": "p4", "title": "a literal backslash-u: \\\\ud800", "description": "", "image": null}',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    t = read_table(path, "pins")
    assert t.frame.select("pin_id", "title", "_row").rows() == [("p1", "one \U0001f600", 1), ("p4", "a literal backslash-u: \\ud800", 4)]
    detail = "a lone surrogate escape (\\ud800-\\udfff): not valid Unicode text"
    assert rejects(t) == [("pins", str(path), 2, "title", "bad_value", detail), ("pins", str(path), 3, "note", "bad_value", detail)]
    assert t.unparsed.sort("row").get_column("record")[0] == lines[1]


def test_many_distinct_extra_keys_are_bounded(tmp_path, capfd):
    """6,000 rows each with a new key: the first MAX_EXTRA_COLUMNS extra keys are kept, the rest ignored with one warning."""
    path = tmp_path / "pins.jsonl"
    rows = [{"pin_id": f"p{i}", "title": "t", "description": "", "image": None, f"k{i:05d}": i} for i in range(6000)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    t = read_table(path, "pins")
    assert t.frame.height == 6000 and t.unparsed.height == 0
    extras = [c for c in t.frame.columns if c.startswith("k")]
    assert extras == [f"k{i:05d}" for i in range(MAX_EXTRA_COLUMNS)] and MAX_EXTRA_COLUMNS == 32
    assert t.frame.get_column("k00031").to_list()[30:33] == [None, 31, None]
    err = capfd.readouterr().err
    assert err == f"pinfeatures: warning: {path}: 5968 column(s) beyond the first 32 extra ones ignored ('k00032', 'k00033', 'k00034', ...)\n"


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_reserved_column_names_are_ignored_and_rows_stay_right(tmp_path, capfd, fmt):
    frame = pl.DataFrame({"pin_id": ["p1", None, "p3"], "title": ["a", "b", "c"], "description": ["", "", ""], "image": [None] * 3,
                          "_row": ["x", "y", "z"], "_file": ["f", "f", "f"], "_reason": ["r", "r", "r"], "extra": [1, 2, 3]})
    path = write_table(frame, tmp_path / "pins", fmt)
    t = read_table(path, "pins")
    first = 2 if fmt == "csv" else 1  # the CSV header is line 1
    extra = ["1", "2", "3"] if fmt == "csv" else [1, 2, 3]  # CSV values are text
    assert t.frame.select("pin_id", "_row", "extra").rows() == [("p1", first, extra[0]), (None, first + 1, extra[1]), ("p3", first + 2, extra[2])]
    assert t.frame.get_column("_file").cast(pl.Utf8).to_list() == [str(path)] * 3
    assert capfd.readouterr().err == (f"pinfeatures: warning: {path}: column(s) '_file', '_reason', '_row' ignored: the name is reserved "
                                      "for pinfeatures' own bookkeeping (_column, _detail, _file, _key, _reason, _row)\n")
    valid = validate_tables_for_pins(t)
    assert valid == [("pins", str(path), first + 1, "pin_id", "null_id")]


def validate_tables_for_pins(pins_table) -> list[tuple]:
    from pinfeatures.build.validate import validate_tables

    others = {name: read_table(write_table(frame.clear(), pins_table.source.path.parent / f"empty_{name}", "parquet"), name)
              for name, frame in small_tables().items() if name != "pins"}
    valid = validate_tables({"pins": pins_table, **others})
    return valid.rejects.select("table", "file", "row", "column", "reason").rows()


def test_csv_rows_are_file_lines_with_multiline_fields(tmp_path):
    path = tmp_path / "boards.csv"
    path.write_text('board_id,title\nb1,"two\nlines"\n,no id\nb3,"three\r\nlines\nhere"\n\nb4,ok\n', encoding="utf-8")
    t = read_table(path, "boards")
    # line 1 header; b1 spans 2-3; the null id is line 4; b3 spans 5-7; line 8 is blank (a row of nulls); b4 is line 9
    assert t.frame.select("board_id", "_row").rows() == [("b1", 2), (None, 4), ("b3", 5), (None, 8), ("b4", 9)]
    ragged = tmp_path / "ragged" / "boards.csv"
    ragged.parent.mkdir()
    ragged.write_text('board_id,title\nb1,"two\nlines"\nb2,x,EXTRA\n\nb3,"a\nb\nc"\nb4\n', encoding="utf-8")
    t = read_table(ragged, "boards")  # the stdlib path: Polars refuses ragged records
    assert t.frame.select("board_id", "_row").rows() == [("b1", 2), ("b3", 6)]
    assert rejects(t) == [
        ("boards", str(ragged), 4, None, "malformed_csv", "3 fields, the header has 2"),
        ("boards", str(ragged), 9, None, "malformed_csv", "1 fields, the header has 2"),
    ]


LATIN1_CSV = "pin_id,title,description,image\np1,Crème brûlée,à la française,\np2,Ça va,naïve café,\n"


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_text_that_is_not_utf8_is_counted_and_warned(tmp_path, capfd, fmt):
    text = LATIN1_CSV if fmt == "csv" else "".join(
        json.dumps({"pin_id": p, "title": ti, "description": d, "image": None}, ensure_ascii=False) + "\n"
        for p, ti, d in (("p1", "Crème brûlée", "à la française"), ("p2", "Ça va", "naïve café")))
    path = tmp_path / f"pins.{fmt}"
    path.write_bytes(text.encode("latin-1"))
    t = read_table(path, "pins")
    assert t.frame.get_column("title").to_list() == ["Cr\ufffdme br\ufffdl\ufffde", "\ufffda va"]
    assert capfd.readouterr().err == (
        f"pinfeatures: warning: {path}: 8 byte(s) are not valid utf-8 and were read as U+FFFD; "
        "if the file is in another encoding, give it with --encoding (e.g. latin-1, cp1252)\n")
    for encoding in ("latin-1", "cp1252", "ISO-8859-1"):
        t = read_table(path, "pins", encoding=encoding)
        assert t.frame.select("title", "description").rows() == [("Crème brûlée", "à la française"), ("Ça va", "naïve café")]
        assert t.frame.get_column("_row").to_list() == ([2, 3] if fmt == "csv" else [1, 2])
    assert capfd.readouterr().err == ""


def test_cp1252_bytes_and_bad_encoding_names(tmp_path, capfd):
    path = tmp_path / "pins.csv"
    path.write_bytes("pin_id,title,description,image\np1,\u201csmart\u201d \u20ac5,x,\n".encode("cp1252") + b"p2,undefined \x81 byte,y,\n")
    t = read_table(path, "pins", encoding="cp1252")
    assert t.frame.get_column("title").to_list() == ["\u201csmart\u201d \u20ac5", "undefined \ufffd byte"]
    assert "1 byte(s) are not valid cp1252" in capfd.readouterr().err
    from pinfeatures.errors import ConfigError

    with pytest.raises(ConfigError, match="encoding 'klingon' is not a known text encoding"):
        read_table(path, "pins", encoding="klingon")
    with pytest.raises(ConfigError, match="encoding 'rot13' is not a text encoding"):
        read_table(path, "pins", encoding="rot13")


def test_csv_ids_are_never_guessed_into_numbers(tmp_path):
    path = tmp_path / "pins.csv"
    path.write_text('pin_id,title,description,image\n007,1e3,"2024-01-01",\n 42 ,true,,x.jpg\n', encoding="utf-8")
    t = read_table(path, "pins")
    assert t.frame.select("pin_id", "title", "description").rows() == [("007", "1e3", "2024-01-01"), ("42", "true", None)]


def test_numeric_text_columns_cast_to_text(tmp_path):
    path = write_table(pl.DataFrame({"pin_id": ["a"], "title": [12], "description": [1.5], "image": [None]}), tmp_path / "pins", "parquet")
    t = read_table(path, "pins")
    assert t.frame.row(0, named=True)["title"] == "12" and t.frame.row(0, named=True)["description"] == "1.5"


def test_unreadable_file_is_an_input_error(tmp_path):
    path = tmp_path / "pins.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(InputError, match="cannot read as parquet") as err:
        read_table(path, "pins")
    assert err.value.file == str(path)


def test_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    """Excel and some exporters start UTF-8 files with a BOM; it must not rename `pin_id` or break line 1."""
    row = {"pin_id": "p1", "title": "Cake", "description": "Nice", "image": "a.jpg"}
    (tmp_path / "pins.csv").write_text("\ufeffpin_id,title,description,image\np1,Cake,Nice,a.jpg\n", encoding="utf-8")
    (tmp_path / "pins.jsonl").write_text("\ufeff" + json.dumps(row) + "\n", encoding="utf-8")
    for name in ("pins.csv", "pins.jsonl"):
        t = read_table(tmp_path / name, "pins")
        assert t.frame.select("pin_id", "title").rows() == [("p1", "Cake")], name
        assert t.unparsed.height == 0, name


def test_ragged_csv_record_is_a_reject_naming_its_row(tmp_path):
    path = tmp_path / "pins.csv"
    path.write_text(
        "pin_id,title,description,image\n"
        "p1,Cake,Nice,a.jpg\n"
        "p2,Pie,Good,b.jpg,EXTRA,MORE\n"
        'p3,"Tart, apple",Fine,c.jpg\n'
        "p4,Short\n",
        encoding="utf-8",
    )
    t = read_table(path, "pins")
    assert t.frame.select("pin_id", "title", "_row").rows() == [("p1", "Cake", 2), ("p3", "Tart, apple", 4)]
    bad = t.unparsed.select("table", "file", "row", "reason", "detail").rows()
    assert bad == [
        ("pins", str(path), 3, "malformed_csv", "6 fields, the header has 4"),
        ("pins", str(path), 5, "malformed_csv", "2 fields, the header has 4"),
    ]


def test_ragged_csv_rows_are_counted_in_the_build(tmp_path):
    tables = small_tables()
    folder = write_inputs(tmp_path / "in", {k: v for k, v in tables.items() if k != "pins"})
    (folder / "pins.csv").write_text(
        "pin_id,title,description,image\np1,Cake,Nice,a.jpg\np2,Pie,Good,b.jpg,EXTRA\n", encoding="utf-8"
    )
    manifest = build(tmp_path / "out", input=str(folder))
    assert manifest["counts"]["pins"] == {"read": 2, "valid": 1, "rejected": 1}
    assert manifest["rejects"]["pins"] == {"malformed_csv": 1}


def test_empty_tables_build_empty_outputs(tmp_path):
    tables = {name: frame.clear() for name, frame in small_tables().items()}
    folder = write_inputs(tmp_path / "in", tables)
    manifest = build(tmp_path / "out", input=str(folder))
    assert manifest["counts"]["pins"] == {"read": 0, "valid": 0, "rejected": 0}
    assert pl.read_parquet(tmp_path / "out" / "features.parquet").height == 0
    texts = pl.read_parquet(tmp_path / "out" / "texts.parquet")
    assert texts.height == 0 and texts.columns == ["pin_id", "variant", "text", "n_tokens", "truncated", "text_sha256"]


def test_empty_csv_file_is_an_input_error(tmp_path):
    path = tmp_path / "pins.csv"
    path.write_text("", encoding="utf-8")
    with pytest.raises(InputError, match="empty") as err:
        read_table(path, "pins")
    assert err.value.file == str(path)
