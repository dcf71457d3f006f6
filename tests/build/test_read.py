"""sources: finding tables in a folder or by flag, every format, schema checks and id casting."""

from __future__ import annotations

import json

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import build, small_tables, write_inputs, write_table

from pinfeatures.build.read import input_tables, locate, read_table
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
    assert rows == ([1, 2, 1, 2] if fmt == "parts" else [1, 2, 3, 4])  # 1-based within each file
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


def test_fractional_float_ids_raise(tmp_path):
    path = write_table(pl.DataFrame({"pin_id": [1.0, 2.5], "board_id": ["a", "b"]}), tmp_path / "saves", "parquet")
    with pytest.raises(InputError) as err:
        read_table(path, "saves")
    assert (err.value.file, err.value.column, err.value.row) == (str(path), "pin_id", 2)
    assert "fractional" in str(err.value)


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
    assert t.frame.select("pin_id", "title", "_row").rows() == [("p1", "Cake", 1), ("p3", "Tart, apple", 3)]
    bad = t.unparsed.select("table", "file", "row", "reason", "detail").rows()
    assert bad == [
        ("pins", str(path), 2, "malformed_csv", "6 fields, the header has 4"),
        ("pins", str(path), 4, "malformed_csv", "2 fields, the header has 4"),
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
