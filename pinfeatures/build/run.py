"""`pinfeatures build`: input tables to a build folder (pinfeatures.buildfolder writes and commits it).

    lock OUT -> read (sources) -> validate -> [text (Polars) beside board titles (DuckDB)] ->
    [language of the pins (with their board titles) beside the query steps (DuckDB)] ->
    languages of the queries -> caption -> features -> assemble (variants, budgets) -> write +
    commit (atomic swap)

`run_build(cfg)` is the one public function; its argument is the build's settings (BuildSettings,
build/settings.py), checked when they were made, so a bad setting never waits for a read.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import polars as pl

from pinfeatures import __version__
from pinfeatures.build.aggregate import SPILL_FOLDER, STREAMED, WORK_FOLDER, ParquetSink, aggregate, board_titles, no_user_ids
from pinfeatures.build.health import StrictError, caption_notes, caption_warnings, empty_variant_warnings
from pinfeatures.build.assemble import assemble_texts
from pinfeatures.build.language import LanguageSettings, detect_languages
from pinfeatures.build.queries import query_languages, query_table
from pinfeatures.build.read import Table, TableFile, input_tables, read_located
from pinfeatures.build.text import clean_column, normalise_pins
from pinfeatures.build.tokens import make_counter
from pinfeatures.build.validate import validate_tables, withhold_unkept_queries
from pinfeatures.buildfolder import BuildWriter, TextLayout, coverage_stats, language_counts, token_stats
from pinfeatures.build.settings import BuildSettings
from pinfeatures.report.settings import ReportSettings
from pinfeatures.chunks import ordered_map
from pinfeatures.contracts import SOURCES, expand, ladder
from pinfeatures.errors import ConfigError
from pinfeatures.extras import require
from pinfeatures.progress import Progress

FEATURE_COLUMNS = ("pin_id", "title", "description", "caption", "boards", "queries", "language", "caption_status", "image_sha256", "image")


def run_build(cfg: BuildSettings, report: ReportSettings | None = None) -> dict[str, Any]:
    """Run the whole build and commit it to cfg.out (see pinfeatures.buildfolder). Returns the manifest.

    The output folder's lock is taken first: a second build into the same folder stops at once.
    `report`: the settings of report.html when `cfg.write_report` (default ReportSettings()).
    """
    if not cfg.out:
        raise ConfigError("--out is required: the folder the build writes to")
    if not cfg.input and not cfg.pins:
        raise ConfigError("give --input DIR (a folder with pins, boards, saves, engagements) or each table (--pins F ...)")
    if cfg.images_root and not Path(cfg.images_root).is_dir():
        raise ConfigError(f"--images-root {cfg.images_root}: not a folder")
    require("caption", "--caption-model", cfg.caption.required_modules())
    variants = expand(cfg.variants)
    counter = make_counter(cfg.tokenizer)
    out = Path(cfg.out)
    progress = Progress(cfg.quiet)
    started = time.perf_counter()
    with BuildWriter(out, previous=cfg.previous) as writer:
        if cfg.shards:  # the same rows from hash-partitions of the pins (pinfeatures.build.shard)
            from pinfeatures.build.shard import run_sharded

            manifest = run_sharded(writer, cfg, variants, counter, progress, started)
        else:
            manifest = _build_into(writer, cfg, variants, counter, progress, started)
    progress.say(
        f"wrote {manifest['outputs']['features']['rows']} pins, {manifest['outputs']['texts']['rows']} texts, "
        f"{manifest['outputs']['rejects']['rows']} rejects to {out} in {manifest['timings']['total']:.1f}s (build {manifest['build_id']})"
    )

    if cfg.write_report:
        from pinfeatures.report.run import write_report

        with progress.stage("report", "writing report.html"):
            path = write_report(out, report or ReportSettings())
        progress.say(f"report: {path}")
    return manifest


def _stop_if_strict(cfg: BuildSettings, warnings: list[str]) -> None:
    """--strict: the first warning as an error (exit 2), before anything is committed."""
    if cfg.strict and warnings:
        more = f" (and {len(warnings) - 1} more warning(s))" if len(warnings) > 1 else ""
        raise StrictError(f"--strict: {warnings[0]}{more}; nothing was committed")


def _build_into(writer: BuildWriter, cfg: BuildSettings, variants: list[str], counter: Any, progress: Progress, started: float) -> dict[str, Any]:
    """The stages, written through `writer`; returns the committed manifest."""
    with progress.stage("read", "finding the input tables; reading pins, boards (and captions) whole"):
        located = input_tables(cfg)
        tables = {name: read_located(tf, cfg.encoding) for name, tf in located.items() if name not in STREAMED}
        fingerprints = {name: tf.fingerprint() for name, tf in located.items()}
    read_warnings = [w for table in tables.values() for w in table.warnings]  # already on stderr

    work = writer.staging / WORK_FOLDER  # inside the staging folder: a killed build's is removed with it
    try:
        with progress.stage("validate", "checking ids, references and actions (saves and engagements one file at a time)"):
            streamed = {name: _each_file(located[name], cfg.encoding, read_warnings) for name in STREAMED}
            sink = ParquetSink(work)
            valid = validate_tables(tables, actions=cfg.actions, streamed=streamed, sink=sink)
        del tables  # the rows as read: the valid frames and the rejects hold all that is used of them
        for name, c in valid.counts.items():
            progress.say(f"  {name}: read {c['read']}, valid {c['valid']}, rejected {c['rejected']}")
        if not valid.users_seen and valid.counts["engagements"]["valid"]:
            read_warnings.append(no_user_ids(cfg.min_users, cfg.require_users))  # already on stderr, like the readers'
        _stop_if_strict(cfg, read_warnings)

        # cleaning the pins' text (Polars) and the board titles (DuckDB) need nothing of each other
        with ThreadPoolExecutor(max_workers=1) as beside:
            cleaned = beside.submit(_timed, progress, "text", "cleaning titles and descriptions, beside the board titles",
                                    normalise_pins, valid.pins, cfg.max_source_chars)
            with progress.stage("aggregate", "board titles per pin (DuckDB)"):
                pin_boards, boards_memory = board_titles(sink.files["saves"], valid.boards, top_k=cfg.board_top_k,
                                                         memory_limit=cfg.memory_limit_bytes, temp_directory=work / SPILL_FOLDER)
            pins = cleaned.result()
        valid.pins = None  # the texts as read: only the cleaned ones are used from here on
        language_settings = LanguageSettings.from_config(cfg)
        # The pins' languages need only the board titles: the language stage (mostly one core of
        # numpy and Python) runs beside the query steps (DuckDB), which leave a core to spare.
        with ThreadPoolExecutor(max_workers=1) as beside:
            pin_languages = beside.submit(_timed, progress, "language", "detecting the pins' languages (with their board titles), beside the query steps",
                                          detect_languages, pins, pin_boards, language_settings)
            with progress.stage("aggregate", "top queries per pin (DuckDB)"):
                agg = aggregate(
                    sink.files["saves"],
                    valid.boards,
                    sink.files["engagements"],
                    action_weights=cfg.action_weights,
                    board_top_k=cfg.board_top_k,
                    query_top_k=cfg.query_top_k,
                    query_min_users=cfg.min_users,
                    query_top_pins=cfg.query_top_pins,
                    use_users=valid.users_seen,
                    memory_limit=cfg.memory_limit_bytes,
                    temp_directory=work / SPILL_FOLDER,
                    pin_boards=pin_boards,
                )
            pins, language_prior, language_stats = pin_languages.result()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # a rejected engagement keeps its query only if that (query, pin) passed the threshold
    valid.rejects = withhold_unkept_queries(valid.rejects, agg.query_pins)

    # the aggregates hold all the build needs of saves and engagements: free the big tables now
    valid.saves = valid.engagements = valid.boards = None

    with progress.stage("language", "the queries' languages"):
        languages = query_languages(agg.query_traffic, agg.query_pins, pins.select("pin_id", "language"), language_prior, language_settings)
        queries = query_table(agg.query_traffic, languages, cfg.query_bands)
        query_pins = agg.query_pins.join(languages.select("query", "query_language"), on="query", how="left", maintain_order="left")
    language_stats["queries"] = {r[0]: int(r[1]) for r in queries.group_by("query_language_source").len().sort("query_language_source").iter_rows()}

    with progress.stage("caption", "captions (precomputed table and/or model)"):
        captions, caption_stats = attach_captions(pins, valid.captions, cfg, images_root(cfg, located), progress)
    variants, warnings, notes = after_captions(cfg, located, variants, caption_stats)

    features = _features(pins, captions, agg.pin_boards, agg.pin_queries, cfg)

    with progress.stage("assemble", f"{len(variants)} variant(s) x {features.height} pins"):
        texts = assemble_texts(features, variants, cfg, counter)
    warnings += empty_variant_warnings(texts, variants)
    report_warnings(cfg, warnings, progress)

    with progress.stage("write", f"writing to {writer.staging}"):
        writer.write_table("features", features)
        writer.write_table("texts", texts)
        writer.write_table("rejects", valid.rejects)
        writer.write_table("query_pins", query_pins)
        writer.write_table("queries", queries)
        writer.write_changes()
    timings = dict(progress.timings)
    timings["total"] = time.perf_counter() - started
    root = images_root(cfg, located)
    fields = _manifest(cfg, fingerprints, valid, agg.stats, language_stats, caption_stats, features, texts, variants, counter.name, timings)
    fields["warnings"], fields["notes"] = read_warnings + warnings, notes
    fields["images_root"] = str(root.absolute()) if root is not None else None
    fields["memory"] = memory_fields(cfg, 1, [agg.memory, boards_memory])
    with progress.stage("commit", f"manifest.json, then the swap into {writer.out}"):
        return writer.commit(fields)


def _timed(progress: Progress, stage: str, what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) as a progress stage (for a stage run in a thread beside another)."""
    with progress.stage(stage, what):
        return fn(*args)


def _each_file(tf: TableFile, encoding: str, warnings: list[str]) -> Iterator[Table]:
    """A table as read, one input file at a time (its reading warnings added to `warnings`).

    The next file is read in a thread while the caller validates this one (`ordered_map`): reading
    is mostly Polars/Arrow work outside the GIL, so on two cores it overlaps; with validate's two
    checks in flight, at most three files are held.
    """
    def read(path: Path) -> Table:
        return read_located(TableFile(tf.name, tf.path, tf.format, [path]), encoding)

    for table in ordered_map(read, tf.files):
        warnings += table.warnings
        yield table


def memory_fields(cfg: BuildSettings, workers: int, shards: list[dict[str, Any]]) -> dict[str, Any]:
    """manifest["memory"]: the memory_limit setting, what each of `workers` DuckDB connections
    (one per shard running at once) got, as DuckDB reports it, and whether any spilled."""
    return {"memory_limit": cfg.memory_limit, "memory_limit_bytes": cfg.memory_limit_bytes, "workers": workers,
            "duckdb_memory_limit": shards[0]["duckdb_memory_limit"], "spilled": any(s["spilled"] for s in shards)}


def after_captions(cfg: BuildSettings, located: dict[str, Any], variants: list[str], caption_stats: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """The variants to assemble, and the caption stage's warnings and notes (a sharded build shares this)."""
    warnings = caption_warnings(caption_stats, max_failure_share=cfg.caption.max_failure_share,
                                images_root_given=cfg.images_root is not None, images_root=images_root(cfg, located))
    notes = caption_notes(caption_stats)
    if cfg.variants.strip() == "ladder" and not cfg.caption.caption_model and "captions" not in located:
        # no caption source at all: a `caption` rung would be empty for every pin
        variants = ladder(tuple(s for s in SOURCES if s != "caption"))
        notes.append("no caption model and no captions table: the ladder starts at title")
    return variants, warnings, notes


def report_warnings(cfg: BuildSettings, warnings: list[str], progress: Progress) -> None:
    """--strict: the first warning stops the build before anything is committed; else each goes to stderr."""
    _stop_if_strict(cfg, warnings)
    for warning in warnings:
        progress.warn(warning)


def images_root(cfg: BuildSettings, located: dict[str, Any] | None = None) -> Path | None:
    """--images-root, else the input folder, else the pins file's folder: local image paths are confined to it."""
    if cfg.images_root:
        return Path(cfg.images_root)
    if cfg.input:
        return Path(cfg.input)
    if located and "pins" in located:
        return located["pins"].path.parent
    return None


def attach_captions(
    pins: pl.DataFrame, precomputed: pl.DataFrame | None, cfg: BuildSettings, root: Path | None, progress: Progress
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """pin_id, caption, caption_status, image_sha256 for every pin.

    A precomputed caption (by pin_id, else by image sha256) wins; the caption model, when one is
    set, captions the rest; without either the status is `skipped`.
    """
    base = pins.select("pin_id", pl.col("image").cast(pl.Utf8))
    result = base.with_columns(
        pl.lit(None, pl.Utf8).alias("caption"), pl.lit("skipped").alias("caption_status"), pl.lit(None, pl.Utf8).alias("image_sha256")
    )
    stats: dict[str, Any] = {"model": cfg.caption.caption_model, "pins": pins.height}
    if precomputed is not None and precomputed.height:
        by_pin = precomputed.filter(pl.col("pin_id").is_not_null()).select("pin_id", pl.col("caption").alias("_pre"))
        result = result.join(by_pin, on="pin_id", how="left", maintain_order="left")
        by_sha = precomputed.filter(pl.col("pin_id").is_null() & pl.col("image_sha256").is_not_null())
        if by_sha.height:
            need = result.filter(pl.col("_pre").is_null() & pl.col("image").is_not_null())
            hashes = _hash_images(need.get_column("image").to_list(), root, cfg)
            sha = pl.DataFrame({"image": list(hashes), "_sha": list(hashes.values())}, schema={"image": pl.Utf8, "_sha": pl.Utf8})
            result = result.join(sha, on="image", how="left", maintain_order="left").join(
                by_sha.select(pl.col("image_sha256").alias("_sha"), pl.col("caption").alias("_pre_sha")), on="_sha", how="left", maintain_order="left"
            )
            result = result.with_columns(pl.coalesce("_pre", "_pre_sha").alias("_pre"), pl.col("_sha").alias("image_sha256")).drop("_sha", "_pre_sha")
        result = result.with_columns(
            pl.when(pl.col("_pre").is_not_null()).then(pl.col("_pre")).otherwise(pl.col("caption")).alias("caption"),
            pl.when(pl.col("_pre").is_not_null()).then(pl.lit("precomputed")).otherwise(pl.col("caption_status")).alias("caption_status"),
        ).drop("_pre")
        stats["precomputed"] = int((result.get_column("caption_status") == "precomputed").sum())
    if cfg.caption.caption_model:
        if cfg.engine == "ray":  # a Ray Data pipeline: CPU decode tasks, model actors (GPU when there is one)
            from pinfeatures.engine.ray_caption import caption_pins_ray as caption_pins
        else:
            from pinfeatures.caption.loop import caption_pins

        todo = result.filter(pl.col("caption_status") != "precomputed").select("pin_id", "image")
        captioned, model_stats = caption_pins(todo, cfg.caption, images_root=root, cache_dir=cfg.caption.cache, quiet=cfg.quiet)
        stats.update(model_stats)
        stats["pins"] = pins.height
        captioned = captioned.select("pin_id", pl.col("caption").alias("_c"), pl.col("caption_status").alias("_s"), pl.col("image_sha256").alias("_h"))
        result = result.join(captioned, on="pin_id", how="left", maintain_order="left").with_columns(
            pl.when(pl.col("_s").is_not_null()).then(pl.col("_c")).otherwise(pl.col("caption")).alias("caption"),
            pl.coalesce("_s", "caption_status").alias("caption_status"),
            pl.coalesce("image_sha256", "_h").alias("image_sha256"),
        ).drop("_c", "_s", "_h")
    result = result.with_columns(clean_column("caption", cfg.max_source_chars))
    stats["status_counts"] = {s: int(n) for s, n in result.group_by("caption_status").len().sort("caption_status").iter_rows()}
    return result.drop("image"), stats


def _hash_images(refs: list[str], root: Path | None, cfg: BuildSettings) -> dict[str, str | None]:
    """ref -> sha256 of its bytes (None when unreadable); URLs through the caption cache's fetch
    records (caption.loop.hash_refs), so a rebuild downloads nothing fetched before."""
    from pinfeatures.caption.loop import hash_refs

    return {img.ref: img.sha256 for img in hash_refs(list(dict.fromkeys(refs)), root, cfg.caption)}


def _features(pins: pl.DataFrame, captions: pl.DataFrame, boards: pl.DataFrame, queries: pl.DataFrame, cfg: BuildSettings) -> pl.DataFrame:
    """One row per valid pin with the five sources and the pins' extra columns carried through."""
    features = (
        pins.join(captions, on="pin_id", how="left", maintain_order="left")
        .join(boards, on="pin_id", how="left", maintain_order="left")
        .join(queries, on="pin_id", how="left", maintain_order="left")
        .with_columns(
            pl.col("boards").fill_null(pl.lit([], pl.List(pl.Utf8))),
            pl.col("queries").fill_null(pl.lit([], pl.List(pl.Utf8))),
            pl.col("image").cast(pl.Utf8),
        )
    )
    extras = [c for c in pins.columns if c not in FEATURE_COLUMNS and not c.startswith("_")]
    return features.select(*FEATURE_COLUMNS, *extras).sort("pin_id")


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("duckdb", "polars", "pyarrow", "langdetect", "torch", "transformers", "open_clip_torch", "pillow"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def _platform() -> str:
    """platform.platform()'s answer without its `uname -p` subprocess (which platform.platform()
    starts to fill `processor`): a fork of a build holding gigabytes, for a field we do not use."""
    u = os.uname()
    lib, version = platform.libc_ver()
    return "-".join([u.sysname, u.release, u.machine] + ([f"with-{lib}{version}"] if lib else []))


def _manifest(cfg, fingerprints, valid, agg_stats, language_stats, caption_stats, features, texts, variants, counter_name, timings) -> dict[str, Any]:
    return {
        "pinfeatures_version": __version__,
        "config": cfg.to_dict(),
        "versions": _versions(),
        "machine": {"cpus": os.cpu_count(), "platform": _platform()},
        "inputs": fingerprints,
        "counts": valid.counts,
        "rejects": valid.reject_reasons,
        "coverage": coverage_stats(features),
        "languages": language_counts(features),
        "language_detection": language_stats,
        "privacy": agg_stats,
        "caption": caption_stats,
        "variants": variants,
        "text_layout": TextLayout.from_settings(cfg).to_dict(),
        "tokens": {
            "counter": counter_name,
            "max_tokens": cfg.max_tokens,
            "max_tokens_per_source": dict(cfg.max_tokens_per_source),
            "by_variant": token_stats(texts, variants),
        },
        "timings": {k: round(v, 4) for k, v in timings.items()},
    }
