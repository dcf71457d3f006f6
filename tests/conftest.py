"""Shared fixtures: repo paths, small hand-made input tables, and one cached build of the fixtures.

Builds run the real pipeline (DuckDB, Polars, langdetect) and write real Parquet; the session-scoped
builds are shared so that the many tests reading their outputs do not each pay for a build.
"""

from __future__ import annotations

import dataclasses

import json
import os
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"
# Tests run from a checkout whether or not the package is installed.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def jsonl_objects(path: Path) -> tuple[list[dict], int]:
    """The lines of a JSONL file that parse, and how many did not (the hostile files plant one)."""
    rows, bad = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            bad += 1
    return rows, bad


def make_fixtures_module():
    """fixtures/make_fixtures.py as a module: its constants say what the hostile set plants."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_table(frame: pl.DataFrame, path: Path, fmt: str) -> Path:
    """Write `frame` as `<path>.<fmt>` (parquet, csv, jsonl) or as a folder `<path>/` of 2 Parquet parts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        out = path.with_suffix(".parquet")
        frame.write_parquet(out)
    elif fmt == "csv":
        out = path.with_suffix(".csv")
        frame.write_csv(out)
    elif fmt == "jsonl":
        out = path.with_suffix(".jsonl")
        out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in frame.to_dicts()), encoding="utf-8")
    elif fmt == "parts":
        out = path
        out.mkdir(parents=True, exist_ok=True)
        half = frame.height // 2
        frame.slice(0, half).write_parquet(out / "part-000.parquet")
        frame.slice(half).write_parquet(out / "part-001.parquet")
    else:  # pragma: no cover - test helper misuse
        raise ValueError(fmt)
    return out


def small_tables() -> dict[str, pl.DataFrame]:
    """Four small, valid input tables (all-text columns so every format round-trips them alike)."""
    pins = pl.DataFrame(
        {
            "pin_id": ["p1", "p2", "p3", "p4"],
            "title": ["Chocolate cake recipe", "Small garden ideas", "Recette de tarte aux pommes", "ねこのケーキ"],
            "description": ["The best <b>moist</b> chocolate cake &amp; frosting for birthdays", None, "Une tarte simple et rapide pour le dessert du dimanche", ""],
            "image": ["p1.jpg", "p2.jpg", None, "p4.jpg"],
        }
    )
    boards = pl.DataFrame({"board_id": ["b1", "b2", "b3", "b4"], "title": ["Cakes", "  CAKES ", "Garden", "Desserts"]})
    saves = pl.DataFrame(
        {
            "pin_id": ["p1", "p1", "p1", "p2", "p3", "p3"],
            "board_id": ["b1", "b2", "b4", "b3", "b4", "b4"],
            "user_id": ["u1", "u2", "u3", "u1", "u2", "u3"],
        }
    )
    eng_rows = []
    for u in ("u1", "u2", "u3"):
        eng_rows += [
            {"query": "chocolate cake", "pin_id": "p1", "action": "click", "user_id": u},
            {"query": "Birthday Cake", "pin_id": "p1", "action": "save", "user_id": u},
            {"query": "garden", "pin_id": "p2", "action": "closeup", "user_id": u},
            {"query": "tarte", "pin_id": "p3", "action": "long_click", "user_id": u},
        ]
    eng_rows.append({"query": "cake", "pin_id": "p1", "action": "impression", "user_id": "u4"})
    engagements = pl.DataFrame(eng_rows)
    return {"pins": pins, "boards": boards, "saves": saves, "engagements": engagements}


def write_inputs(folder: Path, tables: dict[str, pl.DataFrame], fmt: str = "parquet") -> Path:
    """Write each table into `folder` in one format; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        write_table(frame, folder / name, fmt)
    return folder


def write_build(out: Path, tables: dict[str, pl.DataFrame], **fields: Any) -> Path:
    """A build folder written by hand through the real writer (pinfeatures.buildfolder): features and
    texts may leave out required columns (filled with nulls / False), rejects defaults to empty;
    manifest fields default to the frames' variants and the default text layout."""
    from pinfeatures.buildfolder import TABLES, BuildWriter, TextLayout
    from pinfeatures.contracts import empty_rejects

    tables = {"rejects": empty_rejects(), **tables}
    for name in ("features", "texts"):
        frame = tables[name]
        fill = [pl.lit(False if dt == pl.Boolean else None, dt).alias(c) for c, dt in TABLES[name].items() if c not in frame.columns and c not in ("text_sha256", "content_sha256")]
        tables[name] = frame.with_columns(fill).cast({c: dt for c, dt in TABLES[name].items() if c in frame.columns or c not in ("text_sha256", "content_sha256")})
    fields.setdefault("variants", tables["texts"].get_column("variant").unique(maintain_order=True).to_list())
    fields.setdefault("text_layout", TextLayout().to_dict())
    with BuildWriter(out) as writer:
        for name, frame in tables.items():
            writer.write_table(name, frame)
        writer.commit(fields)
    return out


def build(out: Path, **settings: Any) -> dict[str, Any]:
    """Run the real build quietly with the given BuildSettings settings; returns the manifest."""
    from pinfeatures.build.run import run_build
    from pinfeatures.build.settings import BuildSettings
    from pinfeatures.caption.settings import CaptionSettings

    caption = dataclasses.replace(settings.pop("caption", CaptionSettings()), cache=str(out.parent / "cache"))
    return run_build(BuildSettings(out=str(out), quiet=True, caption=caption, **settings))


@pytest.fixture(scope="session")
def fixture_build(tmp_path_factory) -> Path:
    """A build of fixtures/input (no captions), made once per session."""
    out = tmp_path_factory.mktemp("fixture_build") / "out"
    build(out, input=str(FIXTURES / "input"))
    return out


@pytest.fixture(scope="session")
def hostile_build(tmp_path_factory) -> Path:
    """A build of fixtures/hostile with every variant, made once per session."""
    out = tmp_path_factory.mktemp("hostile_build") / "out"
    build(out, input=str(FIXTURES / "hostile"), variants="all")
    return out


# Hypothesis: modest example counts keep the suite fast; the `ci` profile (scripts/test.sh) is
# derandomized, so a CI run is reproducible, and keeps no example database.
try:
    from hypothesis import settings as _hypothesis_settings
except ImportError:  # pragma: no cover - hypothesis is in the dev extra
    pass
else:
    _hypothesis_settings.register_profile("dev", max_examples=60, deadline=None)
    _hypothesis_settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True, database=None, print_blob=True)
    _hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def cli_error(*args: Any) -> str:
    """Run `pinfeatures ARGS` in-process through the real click group and return its error line,
    after checking that it failed the way bad input must: exit status 2, one line on stderr
    starting `pinfeatures: error: `, no exception escaping (no traceback)."""
    from click.testing import CliRunner

    from pinfeatures.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pinfeatures: error: "), result.stderr
    return lines[0]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/golden/*.json from this run's outputs (tests/test_golden.py)")
