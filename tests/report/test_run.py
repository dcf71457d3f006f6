"""Tests of the build report (pinfeatures.report.run, `pinfeatures report`).

A small but complete build folder is written by hand below (Polars frames committed through the
real writer, conftest.write_build) with hostile text everywhere the report shows data and images of every
kind the report must cope with; when pinfeatures.build.run and the fixtures exist, the report of a
real fixtures build is checked too. The page is parsed with html.parser: every section by id,
numbers equal to the manifest's, hostile text escaped, one <script> (the page's own).
"""

from __future__ import annotations

import html
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from conftest import write_build
from PIL import Image

from pinfeatures.report.settings import ReportSettings
from pinfeatures.errors import ConfigError, InputError
from pinfeatures.report.run import (
    kept_and_cut,
    render_report,
    sample_pin_ids,
    traffic_share_rows,
    write_report,
)

HOSTILE_TITLE = '<script>alert(1)</script> "quoted" & \'single\' &amp; &lt;b&gt;'
HOSTILE_DESC = "</textarea><img src=x onerror=alert(2)> \u202eevil reversed\u202c text &#x3C;script&#x3E; " + "long words " * 60
HOSTILE_BOARD = "<b>bold board</b> \u2066isolate\u2069"
HOSTILE_QUERY = "\"><svg onload=alert(3)>"
HOSTILE_LANG = "<script>alert('lang')</script>"

SOURCE_ORDER = ["title", "description", "caption", "boards", "queries"]
LABELS = {"title": "Title", "description": "Description", "caption": "Image", "boards": "Boards", "queries": "Searches"}
VARIANTS = ["caption", "caption+title", "caption+title+description", "caption+title+description+boards",
            "caption+title+description+boards+queries"]


def _render(variant: str, row: dict, per_source_chars: int | None, total_chars: int | None) -> tuple[str, bool]:
    """The text of a variant, with a character budget standing in for the token budget."""
    parts, cut = [], False
    for s in SOURCE_ORDER:
        if s not in variant.split("+"):
            continue
        v = row[s]
        if isinstance(v, list):
            v = " | ".join(v)
        if not v:
            continue
        if per_source_chars is not None and len(v) > per_source_chars:
            v = v[:per_source_chars].rstrip()
            cut = True
        parts.append(f"{LABELS[s]}: {v}")
    text = "\n".join(parts)
    if total_chars is not None and len(text) > total_chars:
        text = text[:total_chars].rstrip()
        cut = True
    return text, cut


def make_images(root: Path) -> dict[str, str]:
    """Images of each kind under root (plus one outside it); returns name -> image ref."""
    root.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (400, 300), (200, 40, 40)).save(root / "red.jpg", quality=85)
    img = Image.new("RGBA", (300, 500), (0, 0, 0, 0))
    img.paste((20, 120, 220, 255), (50, 50, 250, 450))
    img.save(root / "alpha.png")
    Image.new("RGB", (600, 600), (10, 160, 60)).save(root / "big.png")  # over the pixel limit set below
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "empty.jpg").write_bytes(b"")
    outside = root.parent / "secret.jpg"
    Image.new("RGB", (32, 32), (0, 0, 0)).save(outside)
    (root / "link.jpg").symlink_to(outside)
    return {
        "red": "red.jpg", "alpha": "alpha.png", "big": "big.png", "broken": "broken.jpg", "empty": "empty.jpg",
        "link": "link.jpg", "escape": "../secret.jpg", "abs": str(outside), "url": "https://example.com/a.jpg",
        "js": "javascript:alert(4)", "missing": "nope/none.jpg",
    }


def make_build(out: Path, images_root: Path | None = None, *, n_pins: int = 30, with_eval: bool = False) -> dict:
    """Commit features/texts/rejects and a manifest to `out`; return the committed manifest."""
    refs = make_images(images_root) if images_root is not None else {}
    kinds = list(refs) or ["none"]
    langs = ["en", "de", "fr", "und", HOSTILE_LANG]
    statuses = ["ok", "missing", "unreadable", "outside_root", "fetch_failed"]
    rows = []
    for i in range(n_pins):
        hostile = i % 7 == 0
        rows.append({
            "pin_id": f"p{i:03d}",
            "title": HOSTILE_TITLE if hostile else (f"Pin number {i} title" if i % 5 else None),
            "description": HOSTILE_DESC if hostile else ("A cosy description " * (i % 4)).strip() or None,
            "caption": f"a photo of thing {i}" if i % 3 else None,
            "boards": [HOSTILE_BOARD, "Kitchen ideas"] if hostile else [f"board {j}" for j in range(i % 4)],
            "queries": [HOSTILE_QUERY] if hostile else [f"query {j}" for j in range(i % 3)],
            "language": langs[i % len(langs)],
            "caption_status": statuses[i % len(statuses)],
            "image_sha256": None,
            "image": refs.get(kinds[i % len(kinds)]),
            "link": f"https://example.com/{i}?x=<y>",
        })
    feats = pl.DataFrame(rows, schema={
        "pin_id": pl.String, "title": pl.String, "description": pl.String, "caption": pl.String,
        "boards": pl.List(pl.String), "queries": pl.List(pl.String), "language": pl.String,
        "caption_status": pl.String, "image_sha256": pl.String, "image": pl.String, "link": pl.String,
    })
    trows = []
    for r in rows:
        for v in VARIANTS:
            text, cut = _render(v, r, per_source_chars=200, total_chars=500)
            trows.append({"pin_id": r["pin_id"], "variant": v, "text": text, "n_tokens": len(text.split()), "truncated": cut})
    texts = pl.DataFrame(trows, schema={"pin_id": pl.String, "variant": pl.String, "text": pl.String,
                                        "n_tokens": pl.Int32, "truncated": pl.Boolean})
    rejects = pl.DataFrame([
        {"table": "pins", "file": "pins.parquet", "row": 3, "column": "pin_id", "reason": "null_id", "detail": "pin_id is null",
         "record": json.dumps({"pin_id": None, "title": HOSTILE_TITLE, "description": "x" * 2000})},
        {"table": "pins", "file": "pins.parquet", "row": 9, "column": "pin_id", "reason": "duplicate_id", "detail": "p001 again",
         "record": json.dumps({"pin_id": "p001", "title": "</textarea><script>alert(5)</script>"})},
        {"table": "pins", "file": "pins.parquet", "row": 11, "column": "pin_id", "reason": "duplicate_id", "detail": "p002 again",
         "record": json.dumps({"pin_id": "p002", "title": "dup"})},
        {"table": "engagements", "file": "engagements.jsonl", "row": 7, "column": "action", "reason": "unknown_action",
         "detail": "action 'hug' is not one of impression, click, ...", "record": json.dumps({"query": HOSTILE_QUERY, "action": "hug"})},
    ], schema_overrides={"row": pl.Int64})
    per_lang: dict[str, dict] = {}
    for r in rows:
        per_lang.setdefault(r["language"], []).append(r)

    def share(rs, s):
        return sum(1 for r in rs if r[s]) / len(rs)

    sources = ["caption", "title", "description", "boards", "queries"]
    by_variant = {}
    for v in VARIANTS:
        sub = texts.filter(pl.col("variant") == v)
        by_variant[v] = {"texts": sub.height, "mean": float(sub["n_tokens"].mean()), "p50": int(sub["n_tokens"].median()),
                         "p95": int(sub["n_tokens"].quantile(0.95, "nearest")), "max": int(sub["n_tokens"].max()),
                         "truncated_share": float(sub["truncated"].mean())}
    fields = {
        "pinfeatures_version": "0.1.0",
        "images_root": str(images_root) if images_root else None,
        "text_layout": {"order": SOURCE_ORDER, "labels": LABELS, "field_separator": "\n", "list_separator": " | "},
        "config": {"input": "fixtures/input", "out": str(out), "images_root": str(images_root) if images_root else None,
                   "source_order": SOURCE_ORDER, "labels": LABELS, "field_separator": "\n", "list_separator": " | ",
                   "max_tokens": 64, "caption": {"model": "demo", "max_image_pixels": 200_000, "batch_size": 16}},
        "versions": {"python": "3.11.9", "duckdb": "2.0.0", "polars": pl.__version__, "note": HOSTILE_TITLE},
        "inputs": {"pins": {"files": ["pins.parquet"], "format": "parquet", "sha256": "ab" * 32, "bytes": 12345},
                   "engagements": {"files": ["engagements.jsonl"], "format": "jsonl", "sha256": "cd" * 32, "bytes": 999}},
        "counts": {"pins": {"read": n_pins + 3, "valid": n_pins, "rejected": 3},
                   "boards": {"read": 10, "valid": 10, "rejected": 0},
                   "engagements": {"read": 120, "valid": 119, "rejected": 1}},
        "rejects": {"pins": {"duplicate_id": 2, "null_id": 1}, "engagements": {"unknown_action": 1}},
        "coverage": {"overall": {s: share(rows, s) for s in sources},
                     "by_language": {k: {"pins": len(v), **{s: share(v, s) for s in sources}} for k, v in per_lang.items()}},
        "languages": {k: len(v) for k, v in per_lang.items()},
        "privacy": {"query_min_users": 3, "threshold_unit": "users"},
        "caption": {"model": "demo", "statuses": {s: sum(1 for r in rows if r["caption_status"] == s) for s in statuses},
                    "cache_hits": 7, "cache_misses": 3, "images_per_s": 12.5},
        "variants": VARIANTS,
        "tokens": {"counter": "whitespace", "max_tokens": 64, "max_tokens_per_source": {s: 48 for s in sources},
                   "by_variant": by_variant},
        "timings": {"read": 0.12, "validate": 0.05, "aggregate": 0.4, "caption": 3.2, "assemble": 0.3, "total": 4.07},
    }
    write_build(out, {"features": feats, "texts": texts, "rejects": rejects}, **fields)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    if with_eval:
        # the shape `pinfeatures evaluate` writes: ablation.csv rows, ablation.json {rows: {scorer: [...]}}
        ev = out / "evaluation"
        ev.mkdir()
        rows_by = {}
        for scorer in ("lexical", "semantic"):
            rows_by[scorer] = []
            for k, v in enumerate(VARIANTS):
                base = 0.4 + 0.05 * k + (0.03 if scorer == "semantic" else 0)
                rows_by[scorer].append({
                    "scorer": scorer, "variant": v, "row_label": v if k == 0 else "+ " + v.split("+")[-1],
                    "reference": VARIANTS[k - 1] if k else None, "n_queries": 40, "n_pairs": 200, "coverage": 1.0,
                    "ndcg_at_10": base, "delta": 0.05 if k else None, "ci_low": 0.02 if k else None,
                    "ci_high": 0.08 if k else None, "spearman_query": 0.3, "spearman_pooled": 0.25, "n_queries_spearman": 38,
                })
        pl.DataFrame([r for rs in rows_by.values() for r in rs], infer_schema_length=None).write_csv(ev / "ablation.csv")
        (ev / "ablation.json").write_text(json.dumps({
            "judgments": {"file": "judgments.csv", "read": 210, "valid": 200, "rejected": 10, "queries": 40, "pins": 30},
            "build_id": manifest["build_id"], "model_name": "tiny-minilm", "scorer_names": {"lexical": "BM25", "semantic": "MiniLM"},
            "variants": VARIANTS, "scorers": ["lexical", "semantic"], "rows": rows_by, "timings": {"total": 1.5},
        }), encoding="utf-8")
    return manifest


# -- parsing the page -------------------------------------------------------------------


class Page(HTMLParser):
    """The parts of the page the tests look at: elements by id, data-* attributes, scripts."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.ids: list[str] = []
        self.sections: list[str] = []
        self.scripts = 0
        self.tags: list[tuple[str, dict]] = []
        self.text_parts: list[str] = []
        self.feed(text)
        self.close()
        self.text = "".join(self.text_parts)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "section":
            self.sections.append(a.get("id"))
        if tag == "script":
            self.scripts += 1

    def handle_data(self, data):
        self.text_parts.append(data)

    def values(self, attr: str) -> dict[str, float | None]:
        """{data-<attr> value: float(data-value)} for every element carrying both."""
        out = {}
        for _, a in self.tags:
            if f"data-{attr}" in a and "data-value" in a:
                out[a[f"data-{attr}"]] = float(a["data-value"]) if a["data-value"] else None
        return out


SECTIONS = ["coverage", "distributions", "inputs", "examples", "evaluation", "facts"]


@pytest.fixture(scope="module")
def hand_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    manifest = make_build(root / "build", root / "images", with_eval=True)
    return root, manifest


@pytest.fixture(scope="module")
def hand_page(hand_build):
    root, manifest = hand_build
    path = write_report(root / "build", ReportSettings(sample_pins=100, pins=("p007",)))
    return path.read_text(encoding="utf-8"), manifest


def test_page_has_every_section_and_the_manifest_numbers(hand_page):
    text, manifest = hand_page
    page = Page(text)
    assert page.sections == SECTIONS
    for t, c in manifest["counts"].items():
        for k in ("read", "valid", "rejected"):
            assert page.values("count")[f"{t}.{k}"] == c[k]
    assert page.values("count")["pins.valid"] == manifest["counts"]["pins"]["valid"]
    for s, share in manifest["coverage"]["overall"].items():
        assert page.values("coverage")[s] == pytest.approx(share)
    assert page.values("language") == {k: float(v) for k, v in manifest["languages"].items()}
    for t, reasons in manifest["rejects"].items():
        for reason, n in reasons.items():
            assert page.values("reject")[f"{t}.{reason}"] == n
    for v, st in manifest["tokens"]["by_variant"].items():
        assert page.values("truncated")[v] == pytest.approx(st["truncated_share"])
    assert page.values("status") == {k: float(v) for k, v in manifest["caption"]["statuses"].items()}
    timings = page.values("timing")
    assert timings == pytest.approx(manifest["timings"])
    assert page.values("output") == {k: v["rows"] for k, v in manifest["outputs"].items()}
    # coverage by language: one row per language, shares from the manifest
    lang_cells = [a for _, a in page.tags if "data-lang-coverage" in a]
    assert len(lang_cells) == 5 * len(manifest["coverage"]["by_language"])
    # the cache hits and the caption model are in the run facts
    assert "cache_hits" in page.text and "tiny-minilm" in page.text
    # all 30 pins (asked for 100), the requested one first, each with 5 variant texts
    pins = [a["data-pin-id"] for t, a in page.tags if t == "article"]
    assert pins[0] == "p007" and sorted(pins) == [f"p{i:03d}" for i in range(30)]
    assert sum(1 for t, a in page.tags if a.get("class") == "variant") == 30 * 5


def test_hostile_text_is_escaped_everywhere(hand_page):
    text, _ = hand_page
    page = Page(text)
    # the page ships exactly one script (its own); none comes from the data
    assert page.scripts == 1
    assert len(re.findall(r"<script\b", text, re.I)) == 1
    for raw in ("<script>alert", "</textarea>", "<img src=x", "<svg onload", "<b>bold board</b>"):
        assert raw not in text, raw
    # no element from the data: no event handler attribute, no src/href outside data:/#
    for tag, a in page.tags:
        assert not any(k.startswith("on") for k in a), (tag, a)
        for k in ("src", "href"):
            if k in a:
                assert a[k].startswith(("data:image/", "#")), (tag, a)
    # it is all shown as text instead, entities included (&amp; shows as "&amp;", not "&")
    assert "<script>alert(1)</script>" in page.text
    assert "&amp; &lt;b&gt;" in page.text
    assert '"><svg onload=alert(3)>' in page.text
    assert "</textarea><script>alert(5)</script>" in page.text  # a reject record
    # bidi overrides and isolates are shown as marks, never emitted raw
    for ch in ("\u202e", "\u202c", "\u2066", "\u2069"):
        assert ch not in text
    assert "U+202E" in page.text and "U+2066" in page.text
    # the hostile language code reached a matplotlib label: escaped there as well
    svgs = re.findall(r"<svg.*?</svg>", text, re.S)
    assert len(svgs) >= 6
    assert any("alert(" in s for s in svgs)
    for s in svgs:
        assert "<script" not in s


def test_chart_labels_are_escaped_by_matplotlib():
    import xml.etree.ElementTree as ET

    from pinfeatures.report import charts as charts

    hostile = ["<script>alert(1)</script>", "a & b", "$x$ unbalanced $", '"quote\'', "</svg><img src=x>"]
    svg = charts.hbar([(h, i + 1) for i, h in enumerate(hostile)], "t <b>", "pins")
    root = ET.fromstring(svg)  # well-formed XML: nothing broke out of a text node
    texts = ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]
    for h in hostile:
        assert any(h[:27] in t for t in texts), h
    assert "<script" not in svg and "<img" not in svg
    # two charts on one page share no ids
    other = charts.hbar([("x", 1)], "t", "pins")
    ids = set(re.findall(r'id="([^"]+)"', svg))
    assert ids and not ids & set(re.findall(r'id="([^"]+)"', other))


def test_truncated_text_shows_the_cut_part(hand_page, hand_build):
    text, _ = hand_page
    root, _ = hand_build
    cuts = re.findall(r'<del class="cut">(.*?)</del>', text, re.S)
    assert cuts, "no cut text shown"
    # p000 has the long hostile description: the variant text kept 200 chars of it, the rest is cut
    feats = pl.read_parquet(root / "build" / "features.parquet").filter(pl.col("pin_id") == "p000").row(0, named=True)
    full_desc = feats["description"]
    kept_desc = full_desc[:200].rstrip()
    cut_desc = full_desc[len(kept_desc):]
    assert html.escape(cut_desc, quote=True) in cuts or any(html.escape(cut_desc, quote=True) in c for c in cuts)


def test_kept_and_cut_alignment():
    segs = ["Title: hello world", "Description: a b c d e f", "Searches: q1 | q2"]
    # per-source cut in the middle, then the rest intact
    text = "Title: hello\nDescription: a b c d e f\nSearches: q1 | q2"
    assert kept_and_cut(segs, "\n", text) == [
        ("kept", "Title: hello"), ("cut", " world"), ("kept", "\nDescription: a b c d e f\nSearches: q1 | q2")]
    # the total budget dropped the last segment and cut into the second
    text = "Title: hello world\nDescription: a b"
    assert kept_and_cut(segs, "\n", text) == [
        ("kept", "Title: hello world\nDescription: a b"), ("cut", " c d e f\nSearches: q1 | q2")]
    # an ellipsis the assembler adds is shown as added text
    text = "Title: hello\u2026\nDescription: a b c d e f"
    pieces = kept_and_cut(segs, "\n", text)
    assert ("extra", "\u2026") in pieces and ("cut", " world") in pieces
    # text that does not line up with the sources: None (the page shows it as is)
    assert kept_and_cut(segs, "\n", "something else entirely, not from these sources") is None
    assert kept_and_cut([], "\n", "") == []


def test_thumbnails_and_placeholders(hand_page):
    text, _ = hand_page
    page = Page(text)
    status = {}
    pin = None
    for tag, a in page.tags:
        if tag == "article":
            pin = a["data-pin-id"]
        if "data-thumb-status" in a:
            status[pin] = a["data-thumb-status"]
    feats = {f"p{i:03d}": k for i, k in enumerate(
        ["red", "alpha", "big", "broken", "empty", "link", "escape", "abs", "url", "js", "missing"] * 3)}
    expected = {"red": "ok", "alpha": "ok", "big": "too_large", "broken": "unreadable", "empty": "unreadable",
                "link": "outside_root", "escape": "outside_root", "abs": "outside_root", "url": "url (not fetched)",
                "js": "bad_url", "missing": "missing"}
    for pid, st in status.items():
        assert st == expected[feats[pid]], (pid, feats[pid], st)
    imgs = [a["src"] for t, a in page.tags if t == "img"]
    assert len(imgs) == sum(1 for s in status.values() if s == "ok") > 0
    import base64
    import io

    for src in imgs:
        assert src.startswith("data:image/webp;base64,")
        im = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert im.format == "WEBP" and max(im.size) <= 128
    # nothing outside the images root was embedded: the black secret.jpg never shows
    for src in imgs:
        im = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")
        assert im.getpixel((im.width // 2, im.height // 2)) != (0, 0, 0)


def test_sample_is_seeded_and_order_free():
    ids = [f"p{i}" for i in range(100)]
    a = sample_pin_ids(ids, 10, seed=3)
    assert a == sample_pin_ids(list(reversed(ids)), 10, seed=3)
    assert a != sample_pin_ids(ids, 10, seed=4)
    assert len(set(a)) == 10
    assert sample_pin_ids(ids, 3, seed=0, requested=["p5", "p5", "p7"])[:2] == ["p5", "p7"]
    assert len(sample_pin_ids(ids[:4], 50, seed=0)) == 4
    assert sample_pin_ids(ids, 0, seed=0) == []


def test_evaluation_section(hand_build, tmp_path):
    root, _ = hand_build
    text = render_report(root / "build", ReportSettings(sample_pins=0))
    page = Page(text)
    assert "ablation" in page.ids and "no-evaluation" not in page.ids
    csv_rows = pl.read_csv(root / "build" / "evaluation" / "ablation.csv").height
    ablation_html = text.split('id="ablation"')[1].split("</table>")[0]
    assert ablation_html.count("<tr>") == csv_rows + 1
    assert "BM25" in page.text and "MiniLM" in page.text and "Gain per step" in page.text
    # without evaluation the section says so
    other = tmp_path / "b"
    make_build(other, None, n_pins=6)
    page = Page(render_report(other, ReportSettings(sample_pins=0)))
    assert "no-evaluation" in page.ids and "ablation" not in page.ids
    # a broken ablation.json and an unreadable csv are notes, not failures
    (other / "evaluation").mkdir()
    (other / "evaluation" / "ablation.json").write_text("{not json", encoding="utf-8")
    (other / "evaluation" / "ablation.csv").write_bytes(b"\xff\xfe\x00garbage")
    page = Page(render_report(other, ReportSettings(sample_pins=0)))
    assert "ablation.json is not valid JSON" in page.text


def test_an_evaluation_of_another_build_is_not_shown(tmp_path):
    """evaluation/ copied from (or left by) another build: the page says so and shows no ablation."""
    first, second = tmp_path / "first", tmp_path / "second"
    make_build(first, None, n_pins=6, with_eval=True)
    m2 = make_build(second, None, n_pins=6)
    shutil.copytree(first / "evaluation", second / "evaluation")
    page = Page(render_report(second, ReportSettings(sample_pins=0)))
    assert "ablation" not in page.ids and "no-evaluation" in page.ids
    made_from = json.loads((first / "evaluation" / "ablation.json").read_text())["build_id"]
    assert f"evaluation/ was made from build {made_from}, not this build {m2['build_id']}" in page.text
    assert m2["build_id"] in page.text  # the page names its own build
    # an ablation.json with no build id at all (an older evaluate) is not shown either
    data = json.loads((second / "evaluation" / "ablation.json").read_text())
    del data["build_id"]
    (second / "evaluation" / "ablation.json").write_text(json.dumps(data))
    page = Page(render_report(second, ReportSettings(sample_pins=0)))
    assert "ablation" not in page.ids and "made from build (unknown)" in page.text


def test_size_is_bounded_by_the_sample(tmp_path):
    make_build(tmp_path / "b", tmp_path / "img", n_pins=400)
    small = write_report(tmp_path / "b", ReportSettings(sample_pins=0), out=tmp_path / "s.html")
    big = write_report(tmp_path / "b", ReportSettings(sample_pins=24), out=tmp_path / "b.html")
    assert small.stat().st_size < 400_000
    assert big.stat().st_size < 3_000_000
    assert Page(small.read_text()).sections == SECTIONS
    assert not (tmp_path / "b" / "report.html").exists()  # out= was honoured


# -- bad input ------------------------------------------------------------------------------


def test_bad_build_folders(tmp_path):
    """The report reads through pinfeatures.buildfolder: a folder that does not match its manifest is refused."""
    with pytest.raises(InputError, match="build folder not found"):
        write_report(tmp_path / "nope", ReportSettings())
    b = tmp_path / "b"
    make_build(b, None, n_pins=8)
    good = (b / "manifest.json").read_text(encoding="utf-8")
    (b / "manifest.json").write_text("{broken", encoding="utf-8")
    with pytest.raises(InputError, match=r"manifest.json.*not valid JSON"):
        write_report(b, ReportSettings())
    (b / "manifest.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(InputError, match="expected a JSON object"):
        write_report(b, ReportSettings())
    (b / "manifest.json").write_text(json.dumps({"counts": {}, "variants": VARIANTS}), encoding="utf-8")
    with pytest.raises(InputError, match="schema version None, this pinfeatures reads 2: rebuild"):
        write_report(b, ReportSettings())
    (b / "manifest.json").unlink()
    with pytest.raises(InputError, match="manifest.json: missing"):
        write_report(b, ReportSettings())
    (b / "manifest.json").write_text(good, encoding="utf-8")
    pl.read_parquet(b / "features.parquet").drop("caption_status").write_parquet(b / "features.parquet")
    with pytest.raises(InputError, match=r"features.parquet: does not match manifest.json"):
        write_report(b, ReportSettings())


def test_bad_settings_and_unknown_pins(hand_build):
    root, _ = hand_build
    with pytest.raises(InputError, match="pin 'nope' asked for with --pin is not in the build"):
        render_report(root / "build", ReportSettings(pins=("nope",)))
    # settings are checked when made, before the build is read
    for bad in ({"thumbnail_px": 4}, {"sample_pins": -1}, {"thumbnail_format": "gif"}, {"histogram_bins": 0},
                {"thumbnail_quality": 0}, {"max_record_chars": 5}):
        with pytest.raises(ConfigError, match=f"report.{next(iter(bad))} must be"):
            ReportSettings(**bad)


@pytest.mark.parametrize(
    "events, expected",
    [
        ([5, 50, 10, 30, 5], [(1, 0.2), (2, 0.4), (3, 0.6)]),  # 50 | 80 | 90 of 100 exactly
        ([1, 3, 1, 1], [(1, 0.25), (3, 0.75), (4, 1.0)]),  # 3/6 = 50%; 5/6 >= 80%; 6/6 >= 90%
        ([7], [(1, 1.0), (1, 1.0), (1, 1.0)]),
        ([0, 0], [(0, None), (0, None), (0, None)]),
        ([], [(0, None), (0, None), (0, None)]),
    ],
)
def test_traffic_share_rows(events, expected):
    rows = traffic_share_rows(events)
    assert [r["share"] for r in rows] == [0.5, 0.8, 0.9]
    assert [(r["queries"], r["queries_share"]) for r in rows] == expected


def test_query_cache_table(tmp_path):
    """The report's query-cache table counts queries from queries.parquet and shows no query text."""
    feats = pl.DataFrame({"pin_id": ["p1"], "title": ["a"], "language": ["en"]})
    texts = pl.DataFrame({"pin_id": ["p1"], "variant": ["caption"], "text": [""], "n_tokens": [0]})
    write_build(tmp_path / "none", {"features": feats, "texts": texts})
    page = Page(render_report(tmp_path / "none", ReportSettings(sample_pins=0)))
    assert "The build has no queries.parquet." in page.text
    queries = pl.DataFrame({"query": ["secret head query", "q2", "q3", "q4", "q5"], "events": [50, 30, 10, 5, 5],
                            "band": ["head", "torso", "tail", "tail", "tail"], "query_language": ["en"] * 5})
    write_build(tmp_path / "b", {"features": feats, "texts": texts, "queries": queries})
    text = render_report(tmp_path / "b", ReportSettings(sample_pins=0))
    page = Page(text)
    assert page.values("traffic-share") == {"0.5": 1.0, "0.8": 2.0, "0.9": 3.0}
    assert "5 queries past the privacy threshold, 100 events" in " ".join(page.text.split())
    assert "secret head query" not in text
    with pytest.raises(InputError, match="events"):
        write_build(tmp_path / "bad", {"features": feats, "texts": texts, "queries": queries.with_columns(pl.col("events").cast(pl.Utf8))})


def test_odd_values_in_the_manifest(tmp_path):
    """Odd types where the page shows numbers and facts (a hand-edited or foreign field) still give a page."""
    b = tmp_path / "b"
    fields = {"counts": {"pins": {"read": "lots", "valid": None}}, "timings": {"read": "fast", "total": 1.0}, "caption": [1, 2],
              "coverage": {"overall": {"title": "most"}}, "languages": {"en": "many"}, "tokens": {"by_variant": {"caption": 5}}}
    feats = pl.DataFrame({"pin_id": ["p1", "p2"], "title": ["a", None], "language": ["en", "de"]})
    texts = pl.DataFrame({"pin_id": ["p1", "p2"], "variant": ["caption", "caption"], "text": ["", ""], "n_tokens": [0, 0]})
    write_build(b, {"features": feats, "texts": texts}, **fields)
    page = Page(render_report(b, ReportSettings(sample_pins=3)))
    assert page.sections == SECTIONS


def test_jpeg_thumbnails_and_empty_build(tmp_path):
    b = tmp_path / "b"
    make_build(b, tmp_path / "img", n_pins=3)
    page = Page(render_report(b, ReportSettings(thumbnail_format="jpeg", thumbnail_px=64)))
    srcs = [a["src"] for t, a in page.tags if t == "img"]
    assert srcs and all(s.startswith("data:image/jpeg;base64,") for s in srcs)
    # a build with zero pins: every section still renders
    e = tmp_path / "empty"
    feats, texts = pl.read_parquet(b / "features.parquet").head(0), pl.read_parquet(b / "texts.parquet").head(0)
    write_build(e, {"features": feats, "texts": texts}, variants=VARIANTS)
    page = Page(render_report(e, ReportSettings()))
    assert page.sections == SECTIONS


# -- the command line ----------------------------------------------------------------------


def test_cli_report(hand_build, tmp_path):
    from pinfeatures.cli import cli

    root, _ = hand_build
    out = tmp_path / "r" / "page.html"
    res = CliRunner().invoke(cli, ["report", "--build", str(root / "build"), "--images-root", str(root / "images"),
                                   "--pin", "p003", "--pin", "p004", "--sample", "2", "--seed", "7", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"wrote {out}" in res.output
    pins = [a["data-pin-id"] for t, a in Page(out.read_text()).tags if t == "article"]
    assert pins[:2] == ["p003", "p004"] and len(pins) == 4
    res = CliRunner().invoke(cli, ["report", "--build", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "build folder not found" in res.output
    res = CliRunner().invoke(cli, ["report", "--build", str(root / "build"), "--pin", "zzz", "--out", str(out)])
    assert res.exit_code == 2 and "pin 'zzz'" in res.output


# -- a real build of the fixtures ----------------------------------------------------------

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def _real_build(tmp_path, which: str) -> tuple[Path, dict]:
    build = pytest.importorskip("pinfeatures.build.run", reason="pinfeatures.build.run is not there yet")
    from pinfeatures.build.settings import BuildSettings
    from pinfeatures.caption.settings import CaptionSettings

    inp = FIXTURES / which
    if not (inp / "pins.parquet").exists() and not (inp / "pins.jsonl").exists():
        pytest.skip(f"fixtures/{which} is not there yet")
    images = inp / "images" if (inp / "images").is_dir() else FIXTURES / "images"
    out = tmp_path / which
    cfg = BuildSettings(input=str(inp), out=str(out), images_root=str(images), caption=CaptionSettings(cache=str(tmp_path / "cache")),
                        quiet=True, write_report=True)
    return out, build.run_build(cfg)


def test_report_of_a_real_fixtures_build(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out, manifest = _real_build(tmp_path, "input")
    path = out / "report.html"  # written by build --report
    assert path.exists() and path.stat().st_size < 3_000_000
    page = Page(path.read_text(encoding="utf-8"))
    assert page.sections == SECTIONS and page.scripts == 1
    for t, c in manifest["counts"].items():
        for k in ("read", "valid", "rejected"):
            assert page.values("count")[f"{t}.{k}"] == c[k]
    for s, share in manifest["coverage"]["overall"].items():
        assert page.values("coverage")[s] == pytest.approx(share)
    assert page.values("language") == {k: float(v) for k, v in manifest["languages"].items()}
    for v, st in manifest["tokens"]["by_variant"].items():
        assert page.values("truncated")[v] == pytest.approx(st["truncated_share"])
    statuses = pl.read_parquet(out / "features.parquet").group_by("caption_status").len()
    assert page.values("status") == {k: float(n) for k, n in statuses.iter_rows()}
    assert sum(1 for t, a in page.tags if t == "article") == min(24, manifest["counts"]["pins"]["valid"])
    assert any(t == "img" for t, _ in page.tags)


def test_report_of_the_hostile_fixtures(hostile_build, tmp_path):
    """conftest's session build of fixtures/hostile (every variant: 31 histograms)."""
    images = FIXTURES / "hostile" / "images"
    path = write_report(hostile_build, ReportSettings(sample_pins=1000), images_root=images if images.is_dir() else None,
                        out=tmp_path / "report.html")
    manifest = json.loads((hostile_build / "manifest.json").read_text(encoding="utf-8"))
    text = path.read_text(encoding="utf-8")
    page = Page(text)
    assert page.sections == SECTIONS
    assert page.scripts == 1 and len(re.findall(r"<script\b", text, re.I)) == 1
    for tag, a in page.tags:
        assert not any(k.startswith("on") for k in a), (tag, a)
        for k in ("src", "href"):
            if k in a:
                assert a[k].startswith(("data:image/", "#")), (tag, a)
    for t, c in manifest["counts"].items():
        for k in ("read", "valid", "rejected"):
            assert page.values("count")[f"{t}.{k}"] == c[k]
    assert set(page.values("truncated")) == set(manifest["variants"])
    assert sum(1 for t, a in page.tags if t == "article") == manifest["counts"]["pins"]["valid"]
    assert path.stat().st_size < 3_000_000
