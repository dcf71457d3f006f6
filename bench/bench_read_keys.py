"""Reading JSONL whose rows each bring a new key: time and peak memory against rows with the same keys.

    python bench/bench_read_keys.py                 # 6,000 / 12,000 / 24,000 rows
    python bench/bench_read_keys.py --rows 6000 50000

For each row count, two pins.jsonl files of the same shape are written: `distinct` (every row has
one extra key no other row has: the hostile case, 950 MB and quadratic before the extra columns
were bounded) and `same` (every row has the same extra key: the benign baseline). Each is read by
pinfeatures.build.read.read_table in a fresh subprocess, which reports its wall time and its peak
RSS (ru_maxrss). Linear means the distinct/same ratio stays flat as the rows grow.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

_CHILD = """
import resource, sys, time
sys.path.insert(0, {repo!r})
from pinfeatures.build.read import read_table
t0 = time.perf_counter()
table = read_table({path!r}, "pins")
print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, table.frame.width)
"""


def write(path: Path, rows: int, distinct: bool) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(rows):
            key = f"k{i:07d}" if distinct else "k0000000"
            fh.write(json.dumps({"pin_id": f"p{i}", "title": "t", "description": "", "image": None, key: i}) + "\n")


def measure(path: Path) -> tuple[float, float, int]:
    proc = subprocess.run([sys.executable, "-c", _CHILD.format(repo=str(REPO), path=str(path))],
                          capture_output=True, text=True, check=True, timeout=600)
    seconds, rss_mb, width = proc.stdout.split()
    return float(seconds), float(rss_mb), int(width)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[6000, 12000, 24000])
    args = ap.parse_args()
    print(f"{'rows':>8} {'case':>9} {'seconds':>8} {'peak MB':>8} {'columns':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.rows:
            result = {}
            for case in ("same", "distinct"):
                path = Path(tmp) / f"{case}_{n}" / "pins.jsonl"
                path.parent.mkdir()
                write(path, n, case == "distinct")
                result[case] = measure(path)
                s, mb, width = result[case]
                print(f"{n:>8} {case:>9} {s:>8.2f} {mb:>8.0f} {width:>8}")
            (s0, m0, _), (s1, m1, _) = result["same"], result["distinct"]
            print(f"{n:>8} {'ratio':>9} {s1 / s0:>8.2f} {m1 / m0:>8.2f}")


if __name__ == "__main__":
    main()
