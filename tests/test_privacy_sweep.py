"""Sweep every output of a hostile build for planted personal data and below-k queries.

fixtures/hostile (fixtures/make_fixtures.py) plants e-mail addresses, phone numbers, card numbers,
SSNs, IP addresses, URLs and a user id in queries past k, board titles, unparsable lines and
rejected rows, and queries that stay below k. This test builds it (every variant, the report),
evaluates it, draws training pairs from it, and then reads every file those wrote: every string
and list-of-string column of every Parquet file, every string of every JSON file, the text of the
HTML report, and the cells of CSV and Markdown files. None may hold a planted secret or a
below-k query.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from conftest import FIXTURES, build, make_fixtures_module

from pinfeatures.cli import cli


MARKERS = [m.casefold() for m in make_fixtures_module().SECRET_MARKERS] + ["plantedbelowk"]
# a decimal number (metrics, timings): its digits are not text anyone typed
DECIMAL = re.compile(r"^[-+]?\d*\.\d+(?:e[-+]?\d+)?%?$", re.I)


class _Text(HTMLParser):
    """Text nodes (script and SVG labels included) and the attributes that hold text."""

    TEXT_ATTRS = ("title", "alt", "aria-label", "value", "placeholder")

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.parts += [v for k, v in attrs if v and (k in self.TEXT_ATTRS or k.startswith("data-"))]

    def handle_data(self, data):
        self.parts.append(data)


def _json_strings(value, key: str = ""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _json_strings(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _json_strings(v, key)
    elif isinstance(value, str) and not key.endswith("sha256"):
        yield value


def _parquet_strings(path: Path):
    frame = pl.read_parquet(path)
    for name, dtype in frame.schema.items():
        if name.endswith("sha256"):
            continue
        column = frame.get_column(name)
        if dtype == pl.List(pl.Utf8):
            column = column.explode()
        elif dtype not in (pl.Utf8, pl.Categorical):
            continue
        yield name
        yield from (v for v in column.cast(pl.Utf8).drop_nulls().to_list())


def _cells(text: str):
    for cell in re.split(r"[\s|,]+", text):
        if cell and not DECIMAL.match(cell):
            yield cell
    yield text if not re.search(r"\d\.\d", text) else ""


def strings_of(path: Path) -> list[str]:
    """The people-visible strings of one output file, by its kind."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return list(_parquet_strings(path))
    text = path.read_text(encoding="utf-8", errors="replace")
    if suffix == ".json":
        return list(_json_strings(json.loads(text)))
    if suffix == ".jsonl":
        return [s for line in text.splitlines() if line.strip() for s in _json_strings(json.loads(line))]
    if suffix == ".html":
        parser = _Text()
        parser.feed(text)
        return parser.parts
    if suffix in (".csv", ".md"):
        return [cell for line in text.splitlines() for cell in _cells(line)]
    return [text]


@pytest.fixture(scope="module")
def hostile_outputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    out = root / "build"
    build(out, input=str(FIXTURES / "hostile"), variants="all", min_users=3)
    judgments = root / "judgments.csv"
    judgments.write_text("query,pin_id,label\nchocolate cake,1001,5\nchocolate cake,1002,3\nchocolate cake,h001,1\n"
                         "cake,1001,5\ncake,1002,4\ncake,h003,1\n", encoding="utf-8")
    runner = CliRunner()
    for args in (
        ["report", "--build", str(out), "--quiet"],
        ["evaluate", "--build", str(out), "--judgments", str(judgments), "--scorers", "lexical", "--quiet"],
        ["pairs", "--build", str(out), "--sample", "20", "--out", str(out / "pairs_sample.parquet"), "--quiet"],
        ["pairs", "--build", str(out), "--sample", "20", "--format", "jsonl", "--out", str(out / "pairs_sample.jsonl"), "--quiet"],
        ["pairs", "--build", str(out), "--judgments", str(judgments), "--out", str(out / "pairs_judged.parquet"), "--quiet"],
    ):
        result = runner.invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0, (args, result.output)
    return out


def test_the_sweep_covers_every_kind_of_output(hostile_outputs):
    files = [p for p in hostile_outputs.rglob("*") if p.is_file()]
    kinds = {p.suffix for p in files}
    assert {".parquet", ".json", ".html", ".csv", ".md", ".jsonl"} <= kinds, kinds
    names = {str(p.relative_to(hostile_outputs)) for p in files}
    for expected in ("features.parquet", "texts.parquet", "rejects.parquet", "query_pins.parquet", "queries.parquet",
                     "manifest.json", "report.html", "evaluation/ablation.md", "evaluation/scores.parquet",
                     "pairs_sample.parquet", "pairs_judged.parquet"):
        assert any(n == expected or n.startswith(expected.split(".")[0] + "/") for n in names), (expected, sorted(names))


def test_no_planted_secret_or_below_k_query_in_any_output(hostile_outputs):
    leaks = []
    swept = 0
    for path in sorted(p for p in hostile_outputs.rglob("*") if p.is_file()):
        for value in strings_of(path):
            folded = value.casefold()
            swept += 1
            leaks += [(str(path.relative_to(hostile_outputs)), m, value[:120]) for m in MARKERS if m in folded]
    assert swept > 1000
    assert leaks == []


def test_no_user_id_anywhere(hostile_outputs):
    for path in hostile_outputs.rglob("*.parquet"):
        assert "user_id" not in pl.read_parquet_schema(path), path
    rejects = pl.read_parquet(hostile_outputs / "rejects.parquet")
    for record in rejects.get_column("record").drop_nulls().to_list():
        assert "user_id" not in record
    assert "u-planted" not in (hostile_outputs / "manifest.json").read_text(encoding="utf-8")


def test_the_sweep_is_not_vacuous(hostile_outputs):
    """What surrounds the secrets is there: the scrubbed queries passed k and reached the pin."""
    features = pl.read_parquet(hostile_outputs / "features.parquet")
    queries = set(features.filter(pl.col("pin_id") == "1001").get_column("queries").explode().drop_nulls().to_list())
    assert queries, "pin 1001 has no queries at all"
    kept = set(pl.read_parquet(hostile_outputs / "query_pins.parquet").get_column("query").to_list())
    for expected in ("cake ideas", "card cake", "call cake", "ssn cake", "alert(3) cake"):
        assert expected in kept, (expected, sorted(kept))
    boards = set(features.get_column("boards").explode().drop_nulls().to_list())
    assert {"cakes", "bakes", "call pies", "alert(4) tarts"} <= boards, sorted(boards)
    rejects = pl.read_parquet(hostile_outputs / "rejects.parquet")
    raw = rejects.filter(pl.col("reason").is_in(["malformed_json", "malformed_csv"]))
    assert sorted(raw.get_column("table").to_list()) == ["boards", "engagements", "pins"]
    # the boards line is kept scrubbed; the engagements line (user ids, queries) is withheld
    assert raw.filter(pl.col("table") == "engagements").get_column("record").to_list() == [None]
    assert "one field too many" in raw.filter(pl.col("table") == "boards").get_column("record")[0]
