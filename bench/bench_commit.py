"""Cost of the build folder's commit against plain Parquet writes, on the tables of a real build.

    python bench/bench_commit.py --build bench/data/100000/_bench/build     # any committed build folder

In one run, on the same frames (read once from --build, hash columns dropped):
  baseline  the five tables written with write_parquet into a folder (what the build did before
            pinfeatures.buildfolder: no row hashes, no manifest, no swap);
  commit    BuildWriter: text_sha256 + content_sha256, per-file sha256, manifest, swap in (first build);
  rebuild   the same into the folder that now holds a build: + changes.parquet, exchange, delete the old;
  open      open_build with the quick check (size, row count) and the full one (+ sha256 of every file).
Each is timed --repeat times (wall and process CPU); the best is printed, and the file sizes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pinfeatures.buildfolder import PARQUET_OPTIONS, BuildWriter, open_build  # noqa: E402


def timed(fn, repeat: int) -> tuple[float, float]:
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - w, time.process_time() - c))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", required=True, help="a committed build folder to take the tables from")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    source = open_build(args.build)
    frames = {name: source.read(name).drop([c for c in ("text_sha256", "content_sha256") if c in source.schema(name)]) for name in source.tables if name != "changes"}
    fields = {k: source.manifest[k] for k in ("variants", "text_layout")}
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_commit_"))
    work.mkdir(parents=True, exist_ok=True)

    def baseline() -> None:
        out = work / "plain"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        for name, frame in frames.items():
            frame.write_parquet(out / f"{name}.parquet", **PARQUET_OPTIONS)

    def commit(out: Path) -> None:
        with BuildWriter(out) as writer:
            for name, frame in frames.items():
                writer.write_table(name, frame)
            writer.commit(fields)

    def first_commit() -> None:
        shutil.rmtree(work / "committed", ignore_errors=True)
        commit(work / "committed")

    results = {"rows": {k: v.height for k, v in frames.items()}}
    results["baseline"] = timed(baseline, args.repeat)
    results["commit"] = timed(first_commit, args.repeat)
    results["rebuild"] = timed(lambda: commit(work / "committed"), args.repeat)
    results["open_quick"] = timed(lambda: open_build(work / "committed", verify="quick"), args.repeat)
    results["open_full"] = timed(lambda: open_build(work / "committed"), args.repeat)
    size = lambda folder: sum(p.stat().st_size for p in folder.rglob("*.parquet"))  # noqa: E731
    results["bytes"] = {"baseline": size(work / "plain"), "committed": size(work / "committed")}
    changes = json.loads((work / "committed" / "manifest.json").read_text())["changes"]
    print(f"tables: {results['rows']}")
    for key in ("baseline", "commit", "rebuild", "open_quick", "open_full"):
        wall, cpu = results[key]
        print(f"  {key:14s} {wall:7.3f}s wall  {cpu:7.3f}s CPU  (best of {args.repeat})")
    print(f"  bytes: plain {results['bytes']['baseline']:,}  committed {results['bytes']['committed']:,} (with the hash columns)")
    print(f"  rebuild's change set: {changes}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
