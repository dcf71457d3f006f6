"""Build benchmark: pinfeatures build (no captions) against a pandas baseline, on synthetic data.

    python bench/bench_build.py                                   # 1M pins, 5M saves, 20M engagements
    python bench/bench_build.py --pins 50000 --saves 250000 --engagements 1000000

One run:
  1. generates the data with bench/make_synthetic.py unless --data already holds that size;
  2. runs `pinfeatures.build.run.run_build` (caption model None) in a subprocess, sampling the RSS of
     its whole process tree (any child process counts), and reads the per-stage
     timings from its manifest.json;
  3. runs bench/pandas_baseline.py in a subprocess, measured the same way;
  4. checks that both give the same board titles and top queries per pin (features.parquet vs
     the baseline's lists) and counts mismatches;
  5. prints the ratios and writes bench/results/build.json (--results).

Goals it reports against: aggregation >= 5x faster than pandas, peak memory < 8 GiB,
language detection < 1/3 of the build's total time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl
import psutil

ROOT = Path(__file__).resolve().parent.parent
GiB = 1024**3

BUILD_SNIPPET = """
import json, sys
from pinfeatures.build.run import run_build
from pinfeatures.build.settings import BuildSettings
from pinfeatures.caption.settings import CaptionSettings
cfg = BuildSettings(input=sys.argv[1], out=sys.argv[2], caption=CaptionSettings(cache=sys.argv[3]), quiet=True)
run_build(cfg)
"""


def measure(cmd: list[str], env: dict[str, str], timeout: float, interval: float = 0.1) -> dict[str, Any]:
    """Run cmd; return wall seconds, peak summed RSS of its process tree (psutil sampling), return code."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    # output goes to temporary files, not pipes: a chatty child must never block on a full pipe
    out_f, err_f = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out_f, stderr=err_f, text=True)
    peak, peak_procs = 0, 0
    samples: list[tuple[float, int]] = []  # (seconds since start, tree RSS): lets us say which stage peaks
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            procs = [root] + root.children(recursive=True)
            rss = 0
            for p in procs:
                try:
                    rss += p.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            samples.append((time.perf_counter() - t0, rss))
            if rss > peak:
                peak, peak_procs = rss, len(procs)
        except psutil.NoSuchProcess:
            break
        if time.perf_counter() - t0 > timeout:
            proc.kill()
            raise SystemExit(f"timed out after {timeout:.0f}s: {' '.join(cmd[:3])} ...")
        time.sleep(interval)
    proc.wait()
    out_f.seek(0)
    err_f.seek(0)
    out, err = out_f.read(), err_f.read()
    out_f.close()
    err_f.close()
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the whole tree (grandchildren count once their parent has waited for them):
    # unlike wall time, this hardly moves when other work shares the machine
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "load_avg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)],
            "peak_rss_bytes": peak, "peak_processes": peak_procs, "samples": samples, "returncode": proc.returncode,
            "stdout": out, "stderr": err}


def peak_by_stage(samples: list[tuple[float, int]], stages: dict[str, float], total: float, wall: float) -> dict[str, float]:
    """Peak tree RSS (GiB) inside each stage's window, approximately.

    The manifest's stages run back to back and the process exits right after the build, so the
    build started at about `wall - total` seconds into the process (imports come first).
    """
    start = max(wall - total, 0.0)
    out: dict[str, float] = {}
    t = start
    for name, secs in stages.items():
        inside = [rss for ts, rss in samples if t <= ts <= t + secs]
        out[name] = round(max(inside) / GiB, 3) if inside else None
        t += secs
    return out


def ensure_data(data: Path, pins: int, saves: int, engagements: int, env: dict[str, str]) -> dict[str, Any]:
    info_path = data / "synthetic.json"
    if info_path.exists():
        info = json.loads(info_path.read_text())
        if (info.get("pins"), info.get("saves"), info.get("engagements")) == (pins, saves, engagements):
            print(f"data: reusing {data} ({pins} pins, {saves} saves, {engagements} engagements)")
            return info
    print(f"data: generating {data} ...", flush=True)
    cmd = [sys.executable, str(ROOT / "bench" / "make_synthetic.py"), "--out", str(data),
           "--pins", str(pins), "--saves", str(saves), "--engagements", str(engagements)]
    subprocess.run(cmd, env=env, check=True, cwd=ROOT)
    return json.loads(info_path.read_text())


def compare(features_path: Path, pandas_dir: Path) -> dict[str, Any]:
    """Pins whose board list / query list differ between the build and the pandas baseline."""
    feats = pl.read_parquet(features_path, columns=["pin_id", "boards", "queries"])
    result: dict[str, Any] = {"pins": feats.height}
    for col in ("boards", "queries"):
        base = pl.read_parquet(pandas_dir / f"{col}.parquet").rename({col: f"{col}_pandas"})
        joined = feats.select("pin_id", col).join(base, on="pin_id", how="full", coalesce=True).with_columns(
            pl.col(col).fill_null(pl.lit([], pl.List(pl.Utf8))),
            pl.col(f"{col}_pandas").fill_null(pl.lit([], pl.List(pl.Utf8))),
        )
        bad = joined.filter(pl.col(col) != pl.col(f"{col}_pandas"))
        result[col] = {
            "pins_with_values_build": int((joined[col].list.len() > 0).sum()),
            "pins_with_values_pandas": int((joined[f"{col}_pandas"].list.len() > 0).sum()),
            "mismatches": bad.height,
            "examples": bad.head(3).to_dicts(),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Benchmark pinfeatures build against a pandas baseline.")
    ap.add_argument("--pins", type=int, default=1_000_000)
    ap.add_argument("--saves", type=int, default=5_000_000)
    ap.add_argument("--engagements", type=int, default=20_000_000)
    ap.add_argument("--data", default=None, help="data folder (default bench/data/<pins>)")
    ap.add_argument("--work", default=None, help="where the build and baseline write (default DATA/_bench)")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results" / "build.json"))
    ap.add_argument("--timeout", type=float, default=3 * 3600, help="seconds per subprocess")
    ap.add_argument("--skip-pandas", action="store_true")
    args = ap.parse_args(argv)

    label = f"{args.pins // 1000}k" if args.pins < 1_000_000 else f"{args.pins / 1e6:g}m"
    data = Path(args.data or ROOT / "bench" / "data" / label).resolve()
    work = Path(args.work or data / "_bench").resolve()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "HF_HUB_OFFLINE": "1"}
    info = ensure_data(data, args.pins, args.saves, args.engagements, env)

    # -- pinfeatures build
    build_out = work / "build"
    print("build: running pinfeatures.build.run.run_build (no captions) ...", flush=True)
    b = measure([sys.executable, "-c", BUILD_SNIPPET, str(data), str(build_out), str(work / "cache")], env, args.timeout)
    if b["returncode"] != 0:
        print(b["stderr"][-4000:], file=sys.stderr)
        raise SystemExit(f"build failed (exit {b['returncode']})")
    build_maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # largest single process so far
    manifest = json.loads((build_out / "manifest.json").read_text())
    stages = {k: float(v) for k, v in manifest["timings"].items() if k != "total"}
    total = float(manifest["timings"]["total"])

    # -- pandas baseline
    p = None
    ptimes: dict[str, float] = {}
    if not args.skip_pandas:
        print("pandas: running bench/pandas_baseline.py ...", flush=True)
        p = measure([sys.executable, str(ROOT / "bench" / "pandas_baseline.py"), "--input", str(data), "--out", str(work / "pandas")],
                    env, args.timeout)
        if p["returncode"] != 0:
            print(p["stderr"][-4000:], file=sys.stderr)
            raise SystemExit(f"pandas baseline failed (exit {p['returncode']})")
        ptimes = json.loads((work / "pandas" / "timings.json").read_text())

    # -- report
    print()
    print(f"data: {info['pins']:,} pins, {info['boards']:,} boards, {info['saves']:,} saves, {info['engagements']:,} engagements")
    print(f"machine: {os.cpu_count()} cores, load average {b['load_avg_1m'][0]} at the build's start (other work slows wall times)")
    print(f"pinfeatures build: {b['wall_s']:.1f}s wall, {b['cpu_s']:.1f}s CPU (manifest total {total:.1f}s), peak RSS {b['peak_rss_bytes'] / GiB:.2f} GiB "
          f"over {b['peak_processes']} process(es)")
    by_stage = peak_by_stage(b["samples"], stages, total, b["wall_s"])
    print(f"  {'stage':<10} {'seconds':>8}  {'share':>5}  peak RSS (GiB, approx.)")
    for k, v in stages.items():
        pk = by_stage.get(k)
        print(f"  {k:<10} {v:8.2f}s  {100 * v / total:5.1f}%  {pk if pk is not None else '-'}")
    res: dict[str, Any] = {
        "command": "python bench/bench_build.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "data": {k: info[k] for k in ("pins", "boards", "saves", "engagements", "users", "repin_share") if k in info},
        "machine": {"cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / GiB, 1),
                    "platform": platform.platform(), "python": platform.python_version()},
        "build": {"wall_s": round(b["wall_s"], 2), "cpu_s": round(b["cpu_s"], 2), "load_avg_1m": b["load_avg_1m"], "total_s": round(total, 2), "stages_s": {k: round(v, 3) for k, v in stages.items()},
                  "stage_share": {k: round(v / total, 4) for k, v in stages.items()},
                  "peak_rss_gib": round(b["peak_rss_bytes"] / GiB, 3), "max_single_process_rss_gib": round(build_maxrss / GiB, 3),
                  "peak_rss_gib_by_stage": peak_by_stage(b["samples"], stages, total, b["wall_s"]),
                  "language_detection": manifest.get("language_detection")},
    }
    lang_share = stages.get("language", 0.0) / total
    goals = {"peak_memory_under_8_gib": b["peak_rss_bytes"] < 8 * GiB, "language_under_one_third": lang_share < 1 / 3}
    if p is not None:
        agg = stages.get("aggregate", float("nan"))
        cmp_ = compare(build_out / "features.parquet", work / "pandas")
        res["pandas"] = {"wall_s": round(p["wall_s"], 2), "cpu_s": round(p["cpu_s"], 2), "load_avg_1m": p["load_avg_1m"], "timings_s": ptimes, "peak_rss_gib": round(p["peak_rss_bytes"] / GiB, 3)}
        res["agreement"] = cmp_
        res["ratios"] = {
            "pandas_aggregation_over_build_aggregate": round(ptimes["aggregate"] / agg, 2),
            "pandas_read_plus_aggregation_over_build_read_validate_aggregate": round(
                ptimes["total"] / (stages.get("read", 0) + stages.get("validate", 0) + agg), 2),
            "pandas_aggregation_over_whole_build": round(ptimes["aggregate"] / total, 3),
            "build_peak_memory_over_pandas": round(b["peak_rss_bytes"] / max(p["peak_rss_bytes"], 1), 2),
        }
        goals["aggregate_5x_faster_than_pandas"] = ptimes["aggregate"] / agg >= 5
        print(f"pandas baseline: {p['wall_s']:.1f}s wall, {p['cpu_s']:.1f}s CPU (read {ptimes['read']:.1f}s, boards {ptimes['boards']:.1f}s, "
              f"queries {ptimes['queries']:.1f}s), peak RSS {p['peak_rss_bytes'] / GiB:.2f} GiB")
        print(f"agreement: boards mismatches {cmp_['boards']['mismatches']} / {cmp_['pins']} pins, "
              f"queries mismatches {cmp_['queries']['mismatches']} / {cmp_['pins']} pins")
        for col in ("boards", "queries"):
            for ex in cmp_[col]["examples"]:
                print(f"  {col} differs: {ex}")
        r = res["ratios"]
        print(f"ratio pandas aggregation / build aggregate stage: {r['pandas_aggregation_over_build_aggregate']:.1f}x")
        print(f"ratio pandas read+aggregation / build read+validate+aggregate: {r['pandas_read_plus_aggregation_over_build_read_validate_aggregate']:.1f}x")
        print(f"ratio pandas aggregation / whole build: {r['pandas_aggregation_over_whole_build']:.2f}")
    res["language_share_of_total"] = round(lang_share, 4)
    res["goals"] = goals
    print(f"language detection share of the build: {100 * lang_share:.1f}%")
    print("goals: " + ", ".join(f"{k}={'PASS' if v else 'FAIL'}" for k, v in goals.items()))
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
