"""The build folder: the one module that writes it and reads it back (DESIGN.md, "Output contract").

    from pinfeatures.buildfolder import BuildWriter, open_build

    with BuildWriter(out) as writer:                  # takes OUT's lock, stages beside OUT
        writer.write_table("features", features)      # one file: features.parquet
        writer.add_part("texts", texts_of_shard_0)    # or a folder of parts: texts/part-00000.parquet
        writer.add_part("texts", texts_of_shard_1)
        manifest = writer.commit({"variants": [...], "text_layout": layout.to_dict(), ...})

    build = open_build(out)                           # manifest.json checked against the files
    texts = build.scan("texts")                       # LazyFrame over the file or its parts
    features = build.read("features", columns=["pin_id", "language"])
    build.build_id, build.variants, build.layout, build.manifest

Commit protocol (why a kill -9 at any moment leaves OUT as it was, or the new build whole):
every file goes into a staging folder beside OUT (`.OUT.staging-<build id>`, same filesystem);
`manifest.json` (the commit record: build id, schema version, each file's rows, bytes and
sha256) is written last into it; then the staging folder and OUT trade places in one
renameat2(RENAME_EXCHANGE) (or a plain rename when OUT does not exist yet), and the previous
folder is deleted, derived artefacts (evaluation/, pairs, report.html) included: they described
a build that no longer exists. Where renameat2 is missing, OUT is moved aside and the staging
folder renamed in; the next build under the lock finishes or undoes such an interrupted swap.
One build at a time holds `.OUT.lock` (filelock); `.OUT.lock.json` names the holder.

The writer adds `text_sha256` to texts and `content_sha256` to features, and at commit writes
`changes.parquet` against the previous build (the one in OUT, or `previous=`).
"""

from __future__ import annotations

import ctypes
import errno
import glob
import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

import polars as pl
import pyarrow.parquet as pq

from pinfeatures.contracts import LIST_SOURCES, REJECT_SCHEMA, SOURCES, Variant
from pinfeatures.errors import ConfigError, InputError, PinfeaturesError

SCHEMA_VERSION = 2
"""Bumped when a table's columns or the manifest's layout change; readers refuse other versions."""

MANIFEST = "manifest.json"
PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "compression_level": 1, "statistics": True, "row_group_size": 100_000}
"""zstd level 1: on the 1M-pin benchmark's 4M texts, 1.46 s and 129 MB against level 3's 1.82 s and 128 MB."""

VERIFY = ("full", "quick")
"""How open_build checks a folder: `full` (the default) also hashes every committed file and compares
its sha256 with the manifest's (about 1 GB/s: 0.2 s for a 1M-pin build's 210 MB); `quick` checks
existence, size and the Parquet footer's row count only."""


# -- tables and their schemas ----------------------------------------------------------------

TABLES: dict[str, dict[str, pl.DataType]] = {
    "features": {
        "pin_id": pl.Utf8,
        "title": pl.Utf8,
        "description": pl.Utf8,
        "caption": pl.Utf8,
        "boards": pl.List(pl.Utf8),
        "queries": pl.List(pl.Utf8),
        "language": pl.Utf8,
        "caption_status": pl.Utf8,
        "image_sha256": pl.Utf8,
        "content_sha256": pl.Utf8,
    },
    "texts": {"pin_id": pl.Utf8, "variant": pl.Utf8, "text": pl.Utf8, "n_tokens": pl.Int32, "truncated": pl.Boolean, "text_sha256": pl.Utf8},
    "rejects": dict(REJECT_SCHEMA),
    "query_pins": {"query": pl.Utf8, "pin_id": pl.Utf8, "query_traffic": pl.Int64},
    "changes": {"pin_id": pl.Utf8, "variant": pl.Utf8, "change": pl.Utf8, "old_text_sha256": pl.Utf8, "new_text_sha256": pl.Utf8},
    "queries": {"query": pl.Utf8, "events": pl.Int64, "band": pl.Utf8, "query_language": pl.Utf8},
}
"""Each table's required columns and their types (a table may carry more columns)."""

REQUIRED_TABLES = ("features", "texts", "rejects")
CHANGES = ("added", "changed", "removed")


def _same_type(got: pl.DataType, want: pl.DataType) -> bool:
    if want == pl.Utf8:
        return got in (pl.Utf8, pl.Null)
    if isinstance(want, pl.List):
        return isinstance(got, pl.List) and _same_type(got.inner, want.inner)
    if want.is_integer():
        return got.is_integer()
    return got == want


def check_schema(name: str, schema: Mapping[str, pl.DataType], file: str, *, skip: Iterable[str] = ()) -> None:
    """InputError naming the file and the first required column (not in `skip`) that is missing or mistyped."""
    for col, want in TABLES.get(name, {}).items():
        if col in skip:
            continue
        if col not in schema:
            raise InputError("required column is missing", file=file, column=col)
        if not _same_type(schema[col], want):
            raise InputError(f"expected {want}, got {schema[col]}", file=file, column=col)


# -- the text layout -------------------------------------------------------------------------


@dataclass(frozen=True)
class TextLayout:
    """How a text is laid out: one line per source present, in `order`, each `Label: value`,
    joined by `field_separator`; list sources join their items with `list_separator`."""

    order: tuple[str, ...] = ("title", "description", "caption", "boards", "queries")
    labels: Mapping[str, str] = field(
        default_factory=lambda: {"title": "Title", "description": "Description", "caption": "Image", "boards": "Boards", "queries": "Searches"}
    )
    field_separator: str = "\n"
    list_separator: str = " | "

    @classmethod
    def from_settings(cls, settings: Any) -> "TextLayout":
        """From any settings object with source_order, labels, field_separator, list_separator."""
        return cls(tuple(settings.source_order), dict(settings.labels), settings.field_separator, settings.list_separator)

    @classmethod
    def from_dict(cls, data: Any, *, file: str | None = None) -> "TextLayout":
        try:
            layout = cls(tuple(data["order"]), dict(data["labels"]), str(data["field_separator"]), str(data["list_separator"]))
        except (KeyError, TypeError, ValueError):
            raise InputError("text_layout is missing or malformed", file=file) from None
        if sorted(layout.order) != sorted(SOURCES) or set(layout.labels) < set(SOURCES):
            raise InputError("text_layout must name each source once, with a label", file=file)
        return layout

    def to_dict(self) -> dict[str, Any]:
        return {"order": list(self.order), "labels": dict(self.labels), "field_separator": self.field_separator, "list_separator": self.list_separator}

    def label(self, source: str) -> str:
        """The line prefix of a source (`Title:`); a line is `label + " " + value`."""
        return f"{self.labels[source]}:"

    def lines(self, variant: Variant, sources: Mapping[str, Any]) -> list[str]:
        """The untruncated lines of one variant for one pin's source values, in layout order."""
        out = []
        for s in self.order:
            if s not in variant.sources:
                continue
            v = sources.get(s)
            if isinstance(v, (list, tuple)):
                v = self.list_separator.join(str(x) for x in v if x is not None and str(x).strip())
            if v is None or not str(v).strip():
                continue
            out.append(f"{self.label(s)} {v}")
        return out

    def parse(self, text: str) -> dict[str, str]:
        """Split an assembled text back into {source: value}; ValueError on a line with no known label."""
        by_prefix = {self.label(s) + " ": s for s in SOURCES}
        out: dict[str, str] = {}
        if not text:
            return out
        for line in text.split(self.field_separator):
            for prefix, source in by_prefix.items():
                if line.startswith(prefix):
                    if source in out:
                        raise ValueError(f"field {source!r} appears twice")
                    out[source] = line[len(prefix) :]
                    break
            else:
                raise ValueError(f"line with no known label: {line[:80]!r}")
        return out


# -- statistics computed once, at build time, for the manifest -------------------------------


def _present(col: str) -> pl.Expr:
    return pl.col(col).list.len() > 0 if col in LIST_SOURCES else pl.col(col).is_not_null()


def coverage_stats(features: pl.DataFrame | pl.LazyFrame) -> dict[str, Any]:
    """Share of pins with each source, overall and by language (manifest["coverage"])."""
    lf = features.lazy()
    by_lang = (
        lf.group_by("language")
        .agg(pl.len().alias("pins"), *[_present(s).mean().alias(s) for s in SOURCES])
        .sort(["pins", "language"], descending=[True, False])
        .collect()
    )
    if by_lang.height == 0:
        return {"overall": {s: 0.0 for s in SOURCES}, "by_language": {}}
    overall = lf.select([_present(s).mean().alias(s) for s in SOURCES]).collect().row(0, named=True)
    return {
        "overall": {k: round(float(v), 6) for k, v in overall.items()},
        "by_language": {r["language"]: {"pins": int(r["pins"]), **{s: round(float(r[s]), 6) for s in SOURCES}} for r in by_lang.iter_rows(named=True)},
    }


def language_counts(features: pl.DataFrame | pl.LazyFrame) -> dict[str, int]:
    """Pins per language, most first (manifest["languages"])."""
    counts = features.lazy().group_by("language").len().sort(["len", "language"], descending=[True, False]).collect()
    return {r[0]: int(r[1]) for r in counts.iter_rows()}


TOKEN_STATS = ("texts", "mean", "p50", "p95", "max", "truncated_share", "empty_share")


def token_stats(texts: pl.DataFrame | pl.LazyFrame, variants: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per variant: texts, mean/p50/p95/max tokens, truncated and empty shares (manifest["tokens"]["by_variant"])."""
    stats = (
        texts.lazy()
        .group_by("variant")
        .agg(
            pl.len().alias("texts"),
            pl.col("n_tokens").mean().alias("mean"),
            pl.col("n_tokens").quantile(0.5, "nearest").alias("p50"),
            pl.col("n_tokens").quantile(0.95, "nearest").alias("p95"),
            pl.col("n_tokens").max().alias("max"),
            pl.col("truncated").mean().alias("truncated_share"),
            (pl.col("text").str.len_chars() == 0).mean().alias("empty_share"),
        )
        .collect()
    )
    by = {r["variant"]: r for r in stats.iter_rows(named=True)}
    return {
        v: {"texts": int(by[v]["texts"]), **{k: (round(float(by[v][k]), 4) if by[v][k] is not None else None) for k in TOKEN_STATS[1:]}}
        for v in variants
        if v in by
    }


# -- row hashes ------------------------------------------------------------------------------


def _sql_column(frame: pl.DataFrame, view: str, sql_name: str) -> pl.Series:
    """Run sql/<sql_name>.sql over `frame` registered as `view`: one column back, in row order."""
    import duckdb

    from pinfeatures.sqlrun import duckdb_arrow, load_sql

    # a connection of its own: sqlrun.connect drops insertion order, these hashes must keep it
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    try:
        con.register(view, duckdb_arrow(frame))
        return con.sql(load_sql(sql_name)).pl().to_series()
    finally:
        con.close()


ROW_HASHES = {"texts": "text_sha256", "features": "content_sha256"}
"""The hash column the writer adds to a table (when the frame does not carry it already)."""


def with_row_hashes(name: str, frame: pl.DataFrame) -> pl.DataFrame:
    """texts get text_sha256 (of the exact text), features content_sha256 (over the five sources)."""
    if name == "texts" and "text_sha256" not in frame.columns:
        return frame.with_columns(_sql_column(frame.select("text"), "texts", "text_sha256").alias("text_sha256"))
    if name == "features" and "content_sha256" not in frame.columns:
        return frame.with_columns(_sql_column(frame.select(*SOURCES), "features", "content_sha256").alias("content_sha256"))
    return frame


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# -- the lock and the swap -------------------------------------------------------------------


class BuildLocked(PinfeaturesError):
    """Another build holds the output folder's lock."""


def _sibling(out: Path, kind: str, build_id: str = "") -> Path:
    return out.parent / f".{out.name}.{kind}{'-' + build_id if build_id else ''}"


def _new_build_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, f"renameat2({a}, {b}): {os.strerror(err)}")


def _pause(step: str) -> None:
    """Test hook: with PINFEATURES_TEST_PAUSE_AT=<step>, announce the step (a file <step>.reached in
    PINFEATURES_TEST_PAUSE_DIR) and wait for <step>.go there, so a test can kill the build at a known point."""
    if os.environ.get("PINFEATURES_TEST_PAUSE_AT") != step:
        return
    folder = Path(os.environ["PINFEATURES_TEST_PAUSE_DIR"])
    (folder / f"{step}.reached").write_text(str(os.getpid()))
    deadline = time.monotonic() + 300
    while not (folder / f"{step}.go").exists() and time.monotonic() < deadline:
        time.sleep(0.01)


# -- the writer ------------------------------------------------------------------------------


class BuildWriter:
    """Stages a build beside `out` and commits it atomically (see the module docstring).

    Creating it takes the lock (BuildLocked at once if another build holds it), finishes or
    removes what a killed build left beside `out`, and opens the previous build for the change set.
    """

    def __init__(self, out: str | Path, *, previous: str | Path | None = None):
        from filelock import FileLock, Timeout

        self.out = Path(out).resolve()  # a symlinked OUT: stage beside its target, on its filesystem
        self.build_id = _new_build_id()
        self.started = time.time()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(_sibling(self.out, "lock")), timeout=0)
        holder = _sibling(self.out, "lock.json")
        try:
            self._lock.acquire()
        except Timeout:
            raise BuildLocked(f"{self.out}: another build is writing here ({_describe_holder(holder)}); wait for it or stop it") from None
        try:
            holder.write_text(
                json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": _iso(self.started), "build_id": self.build_id}) + "\n",
                encoding="utf-8",
            )
            _recover(self.out)
            if self.out.exists() and not (self.out / MANIFEST).is_file() and (not self.out.is_dir() or any(self.out.iterdir())):
                raise ConfigError(f"--out {self.out} exists and is not a build folder (no {MANIFEST}); give a new or empty folder")
            self.previous: Build | None = None
            self.previous_note: str | None = None
            if previous is not None:
                self.previous = open_build(previous)
            elif (self.out / MANIFEST).is_file():
                try:
                    self.previous = open_build(self.out)
                except PinfeaturesError as exc:
                    self.previous_note = f"the folder's previous build was not used for changes: {exc}"
            self.staging = _sibling(self.out, "staging", self.build_id)
            self.staging.mkdir()
        except BaseException:
            self._lock.release()
            raise
        self.files: dict[str, dict[str, Any]] = {}
        self.tables: dict[str, dict[str, Any]] = {}
        self.changes: dict[str, Any] | None = None
        self.committed = False
        _pause("locked")

    def __enter__(self) -> "BuildWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _add_file(self, name: str, rel: str, frame: pl.DataFrame) -> None:
        if name not in TABLES:
            raise ValueError(f"unknown build table {name!r}; known: {', '.join(TABLES)}")
        check_schema(name, frame.schema, rel, skip=ROW_HASHES.values())  # before hashing: a bad column fails here, by name
        frame = with_row_hashes(name, frame)
        check_schema(name, frame.schema, rel)
        path = self.staging / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(path, **PARQUET_OPTIONS)
        self.files[rel] = {"rows": frame.height, "bytes": path.stat().st_size, "sha256": file_sha256(path)}
        table = self.tables.setdefault(name, {"rows": 0, "files": []})
        table["rows"] += frame.height
        table["files"].append(rel)
        _pause(f"table:{name}")

    def write_table(self, name: str, frame: pl.DataFrame) -> None:
        """Write a whole table as NAME.parquet."""
        if name in self.tables:
            raise ValueError(f"table {name!r} is already written")
        self._add_file(name, f"{name}.parquet", frame)
        self.tables[name]["path"] = f"{name}.parquet"

    def add_part(self, name: str, frame: pl.DataFrame) -> None:
        """Add one part of a table: NAME/part-00000.parquet, NAME/part-00001.parquet, ..."""
        table = self.tables.get(name)
        if table is not None and table.get("path") != f"{name}/":
            raise ValueError(f"table {name!r} is already written as one file")
        n = len(table["files"]) if table else 0
        self._add_file(name, f"{name}/part-{n:05d}.parquet", frame)
        self.tables[name]["path"] = f"{name}/"

    def write_changes(self) -> dict[str, Any]:
        """Write changes.parquet against the previous build (after the texts); the manifest's
        `changes` entry. Commit calls it when the caller has not."""
        if self.changes is not None:
            return self.changes
        if "texts" not in self.tables:
            raise ValueError("write the texts before the changes")
        self.changes = self._changes()
        return self.changes

    def _changes(self) -> dict[str, Any]:
        if self.previous is None:
            return {"previous": None, **({"note": self.previous_note} if self.previous_note else {})}
        cols = ["pin_id", "variant", "text_sha256"]
        new = pl.scan_parquet([self.staging / f for f in self.tables["texts"]["files"]]).select(cols)
        old = self.previous.scan("texts", cols)
        changes = (
            old.rename({"text_sha256": "old_text_sha256"})
            .join(new.rename({"text_sha256": "new_text_sha256"}), on=["pin_id", "variant"], how="full", coalesce=True)
            .filter(pl.col("old_text_sha256").ne_missing(pl.col("new_text_sha256")))
            .select(
                "pin_id",
                "variant",
                pl.when(pl.col("old_text_sha256").is_null())
                .then(pl.lit("added"))
                .when(pl.col("new_text_sha256").is_null())
                .then(pl.lit("removed"))
                .otherwise(pl.lit("changed"))
                .alias("change"),
                "old_text_sha256",
                "new_text_sha256",
            )
            .sort("pin_id", "variant")
            .collect()
        )
        self.write_table("changes", changes)
        counts = dict(changes.group_by("change").len().iter_rows())
        return {
            "previous": {"path": str(self.previous.path), "build_id": self.previous.build_id},
            **{c: int(counts.get(c, 0)) for c in CHANGES},
        }

    def commit(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Write changes.parquet and manifest.json (last), then swap the staged folder in. Returns the manifest."""
        missing = [t for t in REQUIRED_TABLES if t not in self.tables]
        if missing:
            raise ValueError(f"cannot commit without table(s) {', '.join(missing)}")
        changes = self.write_changes()
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "build_id": self.build_id,
            "created_at": _iso(time.time()),
            **fields,
            "changes": changes,
            "outputs": {name: {"path": t["path"], "rows": t["rows"], "parts": len(t["files"])} for name, t in self.tables.items()},
            "files": self.files,
        }
        _pause("manifest")
        _write_json(self.staging / MANIFEST, manifest)
        _pause("swap")
        if not self.out.exists():
            os.rename(self.staging, self.out)
        elif _exchange(self.staging, self.out):
            _pause("swapped")
            shutil.rmtree(self.staging, ignore_errors=True)  # now the previous build
        else:
            replaced = _sibling(self.out, "replaced", self.build_id)
            os.rename(self.out, replaced)
            os.rename(self.staging, self.out)
            shutil.rmtree(replaced, ignore_errors=True)
        self.committed = True
        _pause("committed")
        return manifest

    def close(self) -> None:
        """Release the lock; an uncommitted staging folder is removed."""
        if not self.committed and self.staging.exists():
            shutil.rmtree(self.staging, ignore_errors=True)
        self._lock.release()


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")


def _describe_holder(holder: Path) -> str:
    try:
        info = json.loads(holder.read_text(encoding="utf-8"))
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


def _recover(out: Path) -> None:
    """Under the lock: finish or undo a swap a killed build left half done, and remove stale staging folders."""
    staged = sorted(out.parent.glob(f".{glob.escape(out.name)}.staging-*"))
    replaced = sorted(out.parent.glob(f".{glob.escape(out.name)}.replaced-*"))
    if not out.exists():
        complete = [s for s in staged if (s / MANIFEST).is_file()]
        if replaced and complete:  # killed between the two renames of the fallback swap: finish it
            os.rename(complete[-1], out)
        elif replaced:
            os.rename(replaced[-1], out)
    for leftover in staged + replaced:
        if leftover.exists():
            shutil.rmtree(leftover, ignore_errors=True)


# -- the reader ------------------------------------------------------------------------------


@dataclass
class Build:
    """A verified build folder. Tables are read through `scan` / `read`, never by path."""

    path: Path
    manifest: dict[str, Any]
    build_id: str
    variants: tuple[Variant, ...]
    layout: TextLayout
    tables: dict[str, list[Path]]

    @property
    def variant_names(self) -> list[str]:
        return [v.name for v in self.variants]

    def has(self, name: str) -> bool:
        return name in self.tables

    def files(self, name: str) -> list[Path]:
        """The table's file, or its parts in order; InputError when the build has no such table."""
        if name not in self.tables:
            raise InputError(f"this build has no {name} table (rebuild with a newer pinfeatures?)", file=str(self.path / MANIFEST))
        return self.tables[name]

    def describe(self, name: str) -> str:
        """The table as a path for messages: features.parquet or texts/."""
        return str(self.path / self.manifest["outputs"][name]["path"])

    def scan(self, name: str, columns: Iterable[str] | None = None) -> pl.LazyFrame:
        lf = pl.scan_parquet(self.files(name))
        return lf.select(list(columns)) if columns is not None else lf

    def read(self, name: str, columns: Iterable[str] | None = None) -> pl.DataFrame:
        return self.scan(name, columns).collect()

    def schema(self, name: str) -> dict[str, pl.DataType]:
        return dict(pl.scan_parquet(self.files(name)[0]).collect_schema())


def open_build(path: str | Path, *, verify: str = "full") -> Build:
    """Open a build folder and check it against its manifest; InputError (one line) when it does not match.

    verify: see VERIFY.
    """
    if verify not in VERIFY:
        raise ValueError(f"verify must be one of {VERIFY}, got {verify!r}")
    root = Path(path).absolute()
    if not root.is_dir():
        raise InputError("build folder not found (run `pinfeatures build` first)", file=str(root))
    mpath = root / MANIFEST
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("missing: not a build folder, or a build that never committed", file=str(mpath)) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"not valid JSON: {exc}", file=str(mpath)) from None
    if not isinstance(manifest, dict):
        raise InputError("expected a JSON object", file=str(mpath))
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise InputError(f"schema version {version!r}, this pinfeatures reads {SCHEMA_VERSION}: rebuild the folder", file=str(mpath))
    files, outputs = manifest.get("files"), manifest.get("outputs")
    if not isinstance(files, dict) or not isinstance(outputs, dict) or not isinstance(manifest.get("build_id"), str):
        raise InputError("no build_id, files or outputs: not a committed build", file=str(mpath))
    for rel, entry in files.items():
        _verify_file(root, rel, entry, full=verify == "full")
    tables: dict[str, list[Path]] = {}
    for name, out in outputs.items():
        rels = sorted(f for f in files if f == out.get("path") or f.startswith(f"{name}/"))
        if not rels:
            raise InputError(f"table {name} lists no files", file=str(mpath))
        tables[name] = [root / f for f in rels]
        check_schema(name, dict(pl.scan_parquet(tables[name][0]).collect_schema()), str(tables[name][0]))
    for name in REQUIRED_TABLES:
        if name not in tables:
            raise InputError(f"the {name} table is missing from the manifest", file=str(mpath))
    try:
        variants = tuple(Variant.parse(v) for v in manifest.get("variants", []))
    except ValueError as exc:
        raise InputError(f"variants: {exc}", file=str(mpath)) from None
    layout = TextLayout.from_dict(manifest.get("text_layout"), file=str(mpath))
    return Build(root, manifest, manifest["build_id"], variants, layout, tables)


def _verify_file(root: Path, rel: str, entry: Any, *, full: bool) -> None:
    path = root / rel
    mismatch = f"does not match {MANIFEST} (changed after the build?): "
    if not isinstance(entry, dict) or not all(k in entry for k in ("rows", "bytes", "sha256")):
        raise InputError(f"{MANIFEST} entry is malformed", file=str(path))
    if not path.is_file():
        raise InputError(mismatch + "missing", file=str(path))
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise InputError(mismatch + f"{size} bytes, committed {entry['bytes']}", file=str(path))
    try:
        rows = pq.read_metadata(path).num_rows
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged footer
        raise InputError(mismatch + f"not readable as Parquet ({type(exc).__name__})", file=str(path)) from None
    if rows != entry["rows"]:
        raise InputError(mismatch + f"{rows} rows, committed {entry['rows']}", file=str(path))
    if full and file_sha256(path) != entry["sha256"]:
        raise InputError(mismatch + "sha256 differs", file=str(path))


def mark_derived(data: dict[str, Any], build: Build) -> dict[str, Any]:
    """Stamp a derived artefact's record (evaluation, pairs, report) with the build it was made from."""
    return {"build_id": build.build_id, "build": str(build.path), **data}
