"""Sharded build: the same rows as the whole-input build, with memory bounded by a shard.

    partition -> global: boards, sha256-keyed captions -> per shard: validate, aggregate, text,
    language counts -> global: the language prior, captions (each image sha256 once) -> per shard:
    languages, features, assemble -> global: queries (traffic, users, locale, top pins, language)
    -> one Parquet part per shard and table, and queries.parquet

A pin's shard is `int(md5(pin_id)[:8], 16) % N` (the first 32 bits of the md5 hex digest of the id
as UTF-8; sql/shard_of.sql). md5 gives the same shard in every DuckDB, Python or Spark version;
DuckDB's `hash()` and Polars' `hash()` promise no such thing. A pin's saves, engagements and
captions go to its shard, so every per-pin stage sees all it needs there. What is not keyed by
pin is computed once: the boards (validated once, each shard joins the boards its saves name),
captions keyed by image sha256 alone, whether the privacy threshold counts users, the language
prior (the shards' sure-language counts added up), the queries table and each query's traffic
(sql/query_parts.sql per shard, added up by sql/queries.sql), and captions (one caption call over
all shards' pins: each image sha256 once). Rows with no pin id, and rows that could not be parsed, go to shard 0: they are
rejects whatever the shard.

Why the answer is the same: validation rules are per pin (duplicates are by pin_id, kept in input
order, which a shard keeps), or against global tables (boards); aggregates are grouped by pin or
(query, pin), and board titles are ranked by a key that only orders titles. Tests hold the rows of
`--shards N` equal to the whole-input build for several N.

The partition reads each input file once, with build.read (the same parsing and per-row rejects
as the whole-input build), one task per file, so a worker's memory is bounded by the largest
input file and then by the shard. Partition and shard tasks are plain functions of a picklable
task, run by an engine (pinfeatures.engine: local processes or Ray tasks).
"""

from __future__ import annotations

import os
import pickle
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import duckdb
import polars as pl

from pinfeatures.build.aggregate import QUERY_PARTS, SPILL_FOLDER, STREAMED, WORK_FOLDER, WORK_PARQUET, ParquetSink, aggregate, combine_queries, has_user_ids, no_user_ids
from pinfeatures.build.assemble import assemble_texts
from pinfeatures.build.language import LanguagePrior, LanguageSettings, PinTexts, decide_languages, estimate_prior
from pinfeatures.build.queries import query_languages, query_table
from pinfeatures.build.read import SCHEMAS, Table, TableFile, input_tables, read_located
from pinfeatures.build.text import normalise_pins
from pinfeatures.build.tokens import make_counter
from pinfeatures.build.validate import validate_tables, withhold_unkept_queries
from pinfeatures.buildfolder import with_row_hashes
from pinfeatures.build.settings import MIN_MEMORY_LIMIT, BuildSettings
from pinfeatures.contracts import LIST_SOURCES, SOURCES, empty_rejects
from pinfeatures.errors import ConfigError
from pinfeatures.progress import Progress
from pinfeatures.sqlrun import load_sql

SHARDED_TABLES = ("pins", "saves", "engagements", "captions")
OUTPUT_TABLES = ("features", "texts", "rejects", "query_pins")
GLOBAL = "global"


def shard_ids(pin_ids: pl.Series, n: int) -> pl.Series:
    """The shard (0..n-1) of each id, in order; null ids get shard 0 (see the module docstring).

    md5 runs once per distinct id (an engagements file names each pin many times).
    """
    ids = pin_ids.cast(pl.Utf8).rename("pin_id")
    distinct = ids.drop_nulls().unique()
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    try:
        con.execute("SET enable_progress_bar = false")
        con.register("ids", pl.DataFrame({"pin_id": distinct}).to_arrow())
        # a projection of one scan keeps the row order (preserve_insertion_order is on here)
        shards = con.sql(load_sql("shard_of"), params={"n": n}).pl().get_column("shard")
    finally:
        con.close()
    lookup = pl.DataFrame({"pin_id": distinct, "shard": shards})
    joined = pl.DataFrame({"pin_id": ids}).join(lookup, on="pin_id", how="left", maintain_order="left")
    return joined.get_column("shard").fill_null(0).cast(pl.UInt32)


# -- partition ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardTask:
    """Everything a shard function needs, picklable (engines send it to other processes)."""

    index: int
    work: str
    cfg: BuildSettings
    use_users: bool
    tables: tuple[str, ...]
    prior: LanguagePrior | None = None
    """The whole build's language prior (known after every shard's prepare_shard)."""
    variants: tuple[str, ...] = ()
    """The variants to assemble (known after the caption stage)."""
    memory_limit: int | None = None
    """Bytes DuckDB may hold in this shard's aggregate stage: memory_limit over the shards running at once."""

    @property
    def dir(self) -> Path:
        return Path(self.work) / f"shard-{self.index:05d}"


def _part_dir(work: Path, shard: int | str, table: str) -> Path:
    name = f"shard-{shard:05d}" if isinstance(shard, int) else shard
    return work / name / table


@dataclass(frozen=True)
class PartitionTask:
    """One input file to split into per-shard parts (picklable: engines run these in parallel)."""

    table: TableFile
    index: int
    """The file's place in its table's list: its parts are named after it, so they keep input order."""
    n: int
    work: str
    encoding: str


def partition(located: dict[str, TableFile], n: int, work: Path, encoding: str = "utf-8", engine: Any = None) -> tuple[bool, list[str]]:
    """Split the pin-keyed tables into per-shard parts under `work`, one input file per task (in
    parallel through `engine`, else one after another); returns whether any engagement has a
    user_id, and the reading warnings (build.read: undecodable bytes, ignored columns).

    Every input file gives one part per shard, empty ones included, so every shard's tables
    have the columns of the whole input, in the same order.
    """
    tasks = [
        PartitionTask(TableFile(tf.name, tf.path, tf.format, [f]), i, n, str(work), encoding)
        for name in SHARDED_TABLES if (tf := located.get(name)) is not None
        for i, f in enumerate(tf.files)
    ]
    results = engine.map(partition_file, tasks) if engine is not None else [partition_file(t) for t in tasks]
    return any(users for users, _ in results), [w for _, warnings in results for w in warnings]


def partition_file(task: PartitionTask) -> tuple[bool, list[str]]:
    """One input file's rows, by shard, as WORK/shard-<s>/<table>/<index>.parquet (every shard gets
    a part, maybe empty); captions with no pin id and unparsable lines apart. Returns (whether it is
    an engagements file with some user_id, its reading warnings)."""
    name, i, n, work = task.table.name, task.index, task.n, Path(task.work)
    table = read_located(task.table, task.encoding)
    frame = table.frame
    key = frame.get_column("pin_id") if "pin_id" in frame.columns else pl.Series("pin_id", [None] * frame.height, pl.Utf8)
    users = name == "engagements" and has_user_ids(frame)
    frame = frame.with_columns(shard_ids(key, n).alias("_shard"))
    if name == "captions":
        # a caption with no pin id is keyed by image sha256 alone: validated and joined globally
        no_pin = key.is_null() | (key == "")
        _write(frame.filter(no_pin).drop("_shard"), _part_dir(work, GLOBAL, name) / f"{i:05d}.parquet")
        frame = frame.filter(~no_pin)
    parts = frame.partition_by("_shard", as_dict=True, maintain_order=True, include_key=False)
    for s in range(n):
        _write(parts.get((s,), frame.head(0).drop("_shard")), _part_dir(work, s, name) / f"{i:05d}.parquet")
    if table.unparsed.height:
        where = GLOBAL if name == "captions" else 0
        _write(table.unparsed, _part_dir(work, where, name) / f"unparsed-{i:05d}.parquet")
    return users, table.warnings


def _write(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path, **WORK_PARQUET)


def read_part_table(work: Path, shard: int | str, name: str, source: TableFile) -> Table:
    """A table of one shard as build.read would give it: parts in input order, unparsed rows apart."""
    folder = _part_dir(work, shard, name)
    frames = [pl.read_parquet(p) for p in sorted(folder.glob("[0-9]*.parquet"))]
    unparsed = [pl.read_parquet(p) for p in sorted(folder.glob("unparsed-*.parquet"))]
    if not frames:
        frame = _empty_frame(name)
    else:
        frame = pl.concat(frames, how="diagonal_relaxed", rechunk=False) if len(frames) > 1 else frames[0]
    return Table(name, source, frame, pl.concat([empty_rejects(), *unparsed], how="vertical_relaxed"))


def part_tables(work: Path, shard: int | str, name: str, source: TableFile) -> Iterator[Table]:
    """The table of one shard as read_part_table gives it, one input file's part at a time (with
    that file's unparsed rows)."""
    folder = _part_dir(work, shard, name)
    for path in sorted(folder.glob("[0-9]*.parquet")):
        unparsed = folder / f"unparsed-{path.name}"
        yield Table(name, source, pl.read_parquet(path), pl.concat([empty_rejects(), *([pl.read_parquet(unparsed)] if unparsed.exists() else [])], how="vertical_relaxed"))


def _empty_frame(name: str) -> pl.DataFrame:
    return pl.DataFrame(schema={**{c: pl.Utf8 for c in SCHEMAS[name].columns}, "_row": pl.Int64, "_file": pl.Utf8})


def _as_valid_table(name: str, frame: pl.DataFrame, source: TableFile) -> Table:
    """Rows already validated, as a Table validate_tables accepts again (they stay valid: no rejects)."""
    return Table(name, source, frame.with_columns(pl.lit(None, pl.Utf8).alias("_file"), pl.lit(None, pl.Int64).alias("_row")), empty_rejects())


# -- shard functions ----------------------------------------------------------------------------


def prepare_shard(task: ShardTask) -> dict[str, Any]:
    """Validate, aggregate, clean and detect languages for one shard; write its intermediate tables.

    In:  the shard's parts (partition), WORK/boards.parquet (valid boards).
    Out: SHARD/{pin_images,pin_boards,pin_queries,query_pins,query_traffic,query_users,
         query_locales,rejects,captions}.parquet, SHARD/pin_texts.pickle (the cleaned pins with
         their language scores, which do not depend on the prior: finish_shard's pins), and the
         shard's counts, stats and sure-language counts (returned).
    """
    cfg, work, out = task.cfg, Path(task.work), task.dir
    threads = int(os.environ.get("PINFEATURES_WORKER_THREADS", "0")) or None
    located = _sources(task)
    out.mkdir(parents=True, exist_ok=True)
    tables: dict[str, Table] = {name: read_part_table(work, task.index, name, located[name]) for name in ("pins",)}
    tables["boards"] = _as_valid_table("boards", pl.read_parquet(work / "boards.parquet"), located["boards"])
    if "captions" in task.tables:
        tables["captions"] = read_part_table(work, task.index, "captions", located["captions"])
    # saves and engagements one input file's part at a time, as the whole build reads its input files
    streamed = {name: part_tables(work, task.index, name, located[name]) for name in STREAMED}
    sink = ParquetSink(out / WORK_FOLDER)
    try:
        valid = validate_tables(tables, actions=cfg.actions, streamed=streamed, sink=sink)
        agg = aggregate(
            sink.files["saves"], valid.boards, sink.files["engagements"], action_weights=cfg.action_weights, board_top_k=cfg.board_top_k,
            query_top_k=cfg.query_top_k, query_min_users=cfg.min_users, query_top_pins=cfg.query_top_pins, threads=threads,
            use_users=task.use_users, query_parts=True, memory_limit=task.memory_limit, temp_directory=out / WORK_FOLDER / SPILL_FOLDER,
        )
    finally:
        shutil.rmtree(out / WORK_FOLDER, ignore_errors=True)
    users_seen = valid.users_seen
    valid.boards = None
    pins = normalise_pins(valid.pins, cfg.max_source_chars)
    language_settings = LanguageSettings.from_config(cfg)
    scored = PinTexts(pins, agg.pin_boards, language_settings)  # scored once: finish_shard decides from it
    language_counts = scored.sure_counts(language_settings)
    with open(out / "pin_texts.pickle", "wb") as f:
        pickle.dump(scored, f, protocol=pickle.HIGHEST_PROTOCOL)
    del scored
    # a rejected engagement keeps its query only if that (query, pin) passed: the pin's shard knows
    valid.rejects = withhold_unkept_queries(valid.rejects, agg.query_pins)
    assert agg.parts is not None
    # the pins themselves travel in pin_texts.pickle; the caption step needs only their images
    for name, frame in (("pin_images", pins.select("pin_id", "image")), ("pin_boards", agg.pin_boards), ("pin_queries", agg.pin_queries),
                        ("query_pins", agg.query_pins), ("rejects", valid.rejects), *agg.parts.items()):
        _write(frame, out / f"{name}.parquet")
    if valid.captions is not None:
        _write(valid.captions, out / "captions.parquet")
    counts = {k: v for k, v in valid.counts.items() if k != "boards"}  # boards are counted once, globally
    reasons = {k: v for k, v in valid.reject_reasons.items() if k != "boards"}
    return {"counts": counts, "reasons": reasons, "privacy": agg.stats, "language_counts": language_counts, "users_seen": users_seen,
            "memory": agg.memory}


def finish_shard(task: ShardTask) -> dict[str, Any]:
    """Languages (under the whole build's prior), features and texts of one shard, written as its output parts.

    In:  SHARD/*.parquet and SHARD/pin_texts.pickle (prepare_shard), WORK/captions.parquet (global).
    Out: PARTS/{features,texts,rejects}/part-<shard>.parquet, SHARD/pin_languages.parquet (the
         languages of the pins in the shard's query_pins); returns the language stats and the
         small frames the manifest's statistics need (`stat_rows`).
    """
    from pinfeatures.build.run import _features

    cfg, work, shard = task.cfg, Path(task.work), task.dir
    pin_boards = pl.read_parquet(shard / "pin_boards.parquet")
    with open(shard / "pin_texts.pickle", "rb") as f:
        scored = pickle.load(f)  # written by this build's prepare_shard (the work folder is ours alone)
    pins, _, language_stats = decide_languages(scored, LanguageSettings.from_config(cfg), prior=task.prior)
    del scored
    query_pins = pl.read_parquet(shard / "query_pins.parquet", columns=["pin_id"]).unique()
    _write(pins.select("pin_id", "language").join(query_pins, on="pin_id", how="semi"), shard / "pin_languages.parquet")
    captions = pl.scan_parquet(work / "captions.parquet").join(pins.lazy().select("pin_id"), on="pin_id", how="semi").collect()
    features = _features(pins, captions, pin_boards, pl.read_parquet(shard / "pin_queries.parquet"), cfg)
    del pins, captions
    texts = assemble_texts(features, list(task.variants), cfg, make_counter(cfg.tokenizer))
    rejects = pl.read_parquet(shard / "rejects.parquet")
    if task.index == 0:  # the global step's rejects (boards, sha256-keyed captions) travel with shard 0's
        rejects = pl.concat([rejects, pl.read_parquet(work / "rejects.parquet")]).sort(["table", "file", "row"], nulls_last=True)
    for name, frame in (("features", features), ("texts", texts), ("rejects", rejects)):
        write_part(work / "parts", name, task.index, with_row_hashes(name, frame))  # hashed here, in parallel
    return stat_rows(features, texts) | {"rejects": rejects.height, "language": language_stats}


def _sources(task: ShardTask) -> dict[str, TableFile]:
    return input_tables(task.cfg)


def write_part(parts: Path, name: str, index: int, frame: pl.DataFrame) -> None:
    """One shard's part of an output table, for the driver's writer to add: PARTS/<table>/part-<index>.parquet."""
    _write(frame, parts / name / f"part-{index:05d}.parquet")


def stat_rows(features: pl.DataFrame, texts: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """What the manifest's coverage and token statistics read of a shard's rows, and no more.

    A source's presence is kept as a one-character value (or [''] for a list), an empty text as
    '' and any other as 'x': the statistics of the concatenated shards are those of the whole
    build, and the text bodies never travel back to the driver.
    """
    present = []
    for s in SOURCES:
        if s in LIST_SOURCES:
            present.append(pl.when(pl.col(s).list.len() > 0).then(pl.lit([""], pl.List(pl.Utf8))).otherwise(pl.lit([], pl.List(pl.Utf8))).alias(s))
        else:
            present.append(pl.when(pl.col(s).is_not_null()).then(pl.lit("")).otherwise(pl.lit(None, pl.Utf8)).alias(s))
    text_rows = texts.select("variant", "n_tokens", "truncated", pl.when(pl.col("text").str.len_chars() > 0).then(pl.lit("x")).otherwise(pl.lit("")).alias("text"))
    return {"features": features.select("pin_id", "language", *present), "texts": text_rows}


# -- the driver ---------------------------------------------------------------------------------


def run_sharded(writer: Any, cfg: BuildSettings, variants: list[str], counter: Any, progress: Progress, started: float) -> dict[str, Any]:
    """The sharded build, committed through `writer` (a buildfolder.BuildWriter); returns the manifest.

    The driver: partition, the global steps, the shard tasks through the engine. Shard tasks write
    their parts into a work folder beside OUT; the writer (the build folder's one owner) adds them
    one by one, so the driver holds one shard's table at a time.
    """
    from pinfeatures.build.health import empty_variant_warnings
    from pinfeatures.build.run import _manifest, _stop_if_strict, after_captions, attach_captions, images_root, memory_fields, report_warnings
    from pinfeatures.engine import engine_for

    out = Path(writer.out)
    n = cfg.shards
    work = out.parent / f".{out.name}.shards-{uuid.uuid4().hex[:8]}"
    engine = engine_for(cfg)
    try:
        at_once = engine.concurrency(n)
        shard_limit = cfg.memory_limit_bytes // at_once  # each running shard's DuckDB gets its share
        if shard_limit < MIN_MEMORY_LIMIT:
            raise ConfigError(f"memory_limit {cfg.memory_limit} over {at_once} shards at once is below 32MiB a shard: raise it or lower --workers")
        with progress.stage("partition", f"hash-partitioning the pins into {n} shard(s)"):
            located = input_tables(cfg)
            fingerprints = {name: tf.fingerprint() for name, tf in located.items()}
            any_users, read_warnings = partition(located, n, work, cfg.encoding, engine)

        with progress.stage("validate", "boards and sha256-keyed captions (global)"):
            global_tables = {name: Table(name, located.get(name), _empty_frame(name), empty_rejects()) for name in ("pins", "saves", "engagements")}
            global_tables["boards"] = read_located(located["boards"], cfg.encoding)
            read_warnings += global_tables["boards"].warnings
            _stop_if_strict(cfg, read_warnings)
            if "captions" in located:
                global_tables["captions"] = read_part_table(work, GLOBAL, "captions", located["captions"])
            global_valid = validate_tables({k: global_tables[k] for k in ("pins", "boards", "saves", "engagements", *(("captions",) if "captions" in located else ()))},
                                           actions=cfg.actions)
            _write(global_valid.boards, work / "boards.parquet")
            _write(global_valid.rejects, work / "rejects.parquet")
            del global_tables

        tasks = [ShardTask(i, str(work), cfg, any_users, tuple(located), memory_limit=shard_limit) for i in range(n)]
        with progress.stage("shards", f"validate, aggregate, text, language in {n} shard(s) ({cfg.engine})"):
            memory = shard_memory(work, n)
            prepared = engine.map(prepare_shard, tasks, memory_bytes=memory)
            users_seen = any(p["users_seen"] for p in prepared)
            if users_seen != any_users:  # only valid rows decide, as in the whole-input build: rare, redo
                tasks = [ShardTask(i, str(work), cfg, users_seen, tuple(located), memory_limit=shard_limit) for i in range(n)]
                prepared = engine.map(prepare_shard, tasks, memory_bytes=memory)
            if not users_seen and sum(p["counts"].get("engagements", {}).get("valid", 0) for p in prepared):
                read_warnings.append(no_user_ids(cfg.min_users, cfg.require_users))
                _stop_if_strict(cfg, read_warnings)

        shard_dirs = [t.dir for t in tasks]
        settings = LanguageSettings.from_config(cfg)
        prior = estimate_prior(_add_counts([p["language_counts"] for p in prepared]), settings.prior_weight)
        with progress.stage("caption", "captions (precomputed table and/or model), each image once"):
            pins_images = pl.concat([pl.read_parquet(d / "pin_images.parquet") for d in shard_dirs], how="vertical_relaxed")
            precomputed = [pl.read_parquet(d / "captions.parquet") for d in shard_dirs if (d / "captions.parquet").exists()]
            if global_valid.captions is not None:
                precomputed.append(global_valid.captions)
            captions, caption_stats = attach_captions(
                pins_images, pl.concat(precomputed, how="diagonal_relaxed") if precomputed else None, cfg, images_root(cfg, located), progress
            )
            _write(captions, work / "captions.parquet")
            del pins_images, captions
        variants, warnings, notes = after_captions(cfg, located, variants, caption_stats)
        tasks = [ShardTask(t.index, t.work, cfg, users_seen, t.tables, prior, tuple(variants)) for t in tasks]

        with progress.stage("assemble", f"languages, features and {len(variants)} variant(s) in {n} shard(s)"):
            finished = engine.map(finish_shard, tasks, memory_bytes=memory)
        features = pl.concat([f["features"] for f in finished])
        texts = pl.concat([f["texts"] for f in finished])
        warnings += empty_variant_warnings(texts, variants)
        report_warnings(cfg, warnings, progress)

        with progress.stage("queries", "queries: traffic, users, locale, top pins and language over all shards"):
            query_pins_files = [str(d / "query_pins.parquet") for d in shard_dirs]
            rows = combine_queries({name: [str(d / f"{name}.parquet") for d in shard_dirs] for name in QUERY_PARTS}, query_pins_files,
                                   use_users=users_seen, top_pins=cfg.query_top_pins, memory_limit=cfg.memory_limit_bytes,
                                   temp_directory=work / SPILL_FOLDER)
            all_pairs = pl.read_parquet(query_pins_files, columns=["query", "pin_id", "score"])
            pin_languages = pl.concat([pl.read_parquet(d / "pin_languages.parquet") for d in shard_dirs])
            languages = query_languages(rows, all_pairs, pin_languages, prior, settings)
            queries = query_table(rows, languages, cfg.query_bands)
            del all_pairs, pin_languages
            joined = rows.select("query", pl.col("events").alias("_traffic")).join(languages.select("query", "query_language"), on="query")
            for t in tasks:
                query_pins = pl.read_parquet(t.dir / "query_pins.parquet")
                query_pins = (query_pins.join(joined, on="query", how="left", maintain_order="left")
                              .with_columns(pl.col("_traffic").alias("query_traffic")).drop("_traffic"))
                write_part(work / "parts", "query_pins", t.index, query_pins)

        with progress.stage("write", f"writing to {writer.staging}"):
            for name in OUTPUT_TABLES:
                for t in tasks:
                    writer.add_part(name, pl.read_parquet(work / "parts" / name / f"part-{t.index:05d}.parquet"))
            writer.write_table("queries", queries)
            writer.write_changes()
        with progress.stage("commit", f"manifest.json, then the swap into {writer.out}"):
            counts, reasons = _merged_counts(global_valid, prepared, list(located))
            language_stats = _sum_stats([f["language"] for f in finished])
            language_stats["queries"] = {r[0]: int(r[1]) for r in queries.group_by("query_language_source").len().sort("query_language_source").iter_rows()}
            timings = dict(progress.timings)
            timings["total"] = time.perf_counter() - started
            fields = _manifest(cfg, fingerprints, SimpleNamespace(counts=counts, reject_reasons=reasons), _sum_stats([p["privacy"] for p in prepared]),
                               language_stats, caption_stats, features, texts, variants, counter.name, timings)
            root = images_root(cfg, located)
            fields["images_root"] = str(root.absolute()) if root is not None else None
            fields["warnings"], fields["notes"] = read_warnings + warnings, notes
            fields["memory"] = memory_fields(cfg, at_once, [p["memory"] for p in prepared])
            fields["sharding"] = {"shards": n, "engine": cfg.engine, "shard_of": "int(md5(pin_id)[:8], 16) % shards"}
            return writer.commit(fields)
    finally:
        engine.close()
        shutil.rmtree(work, ignore_errors=True)


SHARD_MEMORY_PER_INPUT_BYTE = 8
SHARD_MEMORY_BASE = 512 * 1024**2


def shard_memory(work: Path, n: int) -> int:
    """Memory to declare per shard task: the largest shard's partitioned input (uncompressed Parquet) times
    SHARD_MEMORY_PER_INPUT_BYTE (decoded frames, DuckDB's hash tables, texts), plus the
    interpreter and libraries (SHARD_MEMORY_BASE). A declaration for the scheduler, not a limit."""
    largest = max((sum(f.stat().st_size for f in (work / f"shard-{i:05d}").rglob("*.parquet")) for i in range(n)), default=0)
    return SHARD_MEMORY_BASE + SHARD_MEMORY_PER_INPUT_BYTE * largest


def _merged_counts(global_valid: Any, prepared: list[dict[str, Any]], order: list[str]) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Per-table read/valid/rejected and reject reasons: the global step's plus every shard's."""
    counts: dict[str, dict[str, int]] = {}
    reasons: dict[str, dict[str, int]] = {}
    for c, r in [(global_valid.counts, global_valid.reject_reasons), *[(p["counts"], p["reasons"]) for p in prepared]]:
        for table in order:
            if table in c:
                into = counts.setdefault(table, {"read": 0, "valid": 0, "rejected": 0})
                for k, v in c[table].items():
                    into[k] += v
            for reason, v in r.get(table, {}).items():
                reasons.setdefault(table, {})
                reasons[table][reason] = reasons[table].get(reason, 0) + v
    for table in order:
        reasons.setdefault(table, {})
        reasons[table] = dict(sorted(reasons[table].items()))
    return {t: counts[t] for t in order if t in counts}, {t: reasons[t] for t in order}


def _add_counts(parts: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for k, v in part.items():
            total[k] = total.get(k, 0) + v
    return total


def _sum_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Shard statistics added up (counts); settings and notes taken from the first shard."""
    total: dict[str, Any] = {}
    for part in parts:
        for k, v in part.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k in total and k != "query_min_users":
                total[k] += v
            else:
                total.setdefault(k, v)
    return total
