#!/usr/bin/env bash
# Mutation testing of the core modules: are there small realistic bugs the tests let through?
#
#   nice -n 19 scripts/mutation.sh                        # every module + the hand-written mutants
#   MUTATE=pinfeatures/build/tokens.py HAND_MUTANTS=0 scripts/mutation.sh   # one module, no hand mutants
#   MUTATE=none scripts/mutation.sh                       # the hand-written mutants alone
#   JOBS=2 MUTATION_TIMEOUT=5400 scripts/mutation.sh       # workers; seconds for the whole run (hand-written first)
#
# Works on a copy of the committed tree (HEAD) in a temporary folder, so the checkout is never
# touched. Two parts:
#   1. mutmut (3.x) over the core Python modules, one module at a time with the tests that
#      exercise it (TESTS_OF below; mutmut runs, for each mutant, just those of them that reach
#      the mutated function, fastest first). Not mutated: `raise` lines (their messages would
#      become XX..XX noise) and `_grouped_digits_pattern` (it runs at import, before a mutant is
#      switched on; mutated by hand instead), nor `assert` lines; tests marked `slow` (real builds killed in a
#      subprocess) are left out.
#   2. hand-written mutants mutmut cannot make: SQL (comparison operators, tie-break keys, the
#      privacy threshold), the scrubber's patterns (module-level strings) and the caption
#      fingerprint. Each is applied alone and its tests are run.
# Prints, per module, `killed N of M` and its seconds, then the total `killed N of M` and every
# survivor with its diff. A module MUTATION_TIMEOUT cut short is reported with its unchecked
# count. MUTANTS="name ..." (mutmut names or fnmatch patterns, as the survivors list prints them)
# checks just those: a previous run's survivors, once tests are added for them.
# Not part of CI: the time a full run takes is in the README ("Mutation testing").
# A timeout counts as killed (the tests stopped a hang).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
BIN="$(dirname "$PY")"
JOBS="${JOBS:-2}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/pinfeatures-mutation.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
git -C "$ROOT" archive HEAD | tar -x -C "$WORK"
cd "$WORK"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1 HYPOTHESIS_PROFILE=ci
export PYTHONPATH="$WORK"

# Each module with the tests that exercise it, cheapest first: mutmut runs once per module (its
# own stats and clean-test passes over just these tests), so a run cut short by MUTATION_TIMEOUT
# still gives complete scores for the modules it finished.
MODULES=(
    pinfeatures/contracts.py pinfeatures/build/text.py pinfeatures/build/tokens.py pinfeatures/build/scrub.py
    pinfeatures/evaluate/metrics.py pinfeatures/build/assemble.py pinfeatures/caption/cache.py pinfeatures/build/validate.py
    pinfeatures/buildfolder.py
)
declare -A TESTS_OF=(
    [pinfeatures/evaluate/metrics.py]="tests/evaluate/test_metrics.py tests/test_properties.py"
    [pinfeatures/contracts.py]="tests/test_contracts.py tests/test_properties.py"
    [pinfeatures/build/text.py]="tests/build/test_text.py tests/test_properties.py"
    [pinfeatures/build/tokens.py]="tests/build/test_tokens.py tests/build/test_assemble.py tests/test_properties.py"
    [pinfeatures/build/scrub.py]="tests/build/test_scrub.py tests/build/test_text.py tests/test_properties.py"
    [pinfeatures/build/assemble.py]="tests/build/test_assemble.py tests/test_properties.py"
    [pinfeatures/caption/cache.py]="tests/caption/test_cache_shared.py tests/caption/test_loop.py"
    [pinfeatures/build/validate.py]="tests/build/test_validate.py tests/build/test_privacy.py tests/build/test_read.py tests/test_properties.py"
    [pinfeatures/buildfolder.py]="tests/test_buildfolder.py tests/build/test_commit.py"
)
# MUTATE="a.py b.py" mutates just those (a quicker run)
if [ -n "${MUTATE:-}" ]; then read -ra MODULES <<< "$MUTATE"; fi
# MUTATE=none: the hand-written mutants alone
if [ "${MUTATE:-}" = none ]; then MODULES=(); fi
# A pytest plugin for the mutant runs: each mutant's tests run fastest first (by the durations
# mutmut measured in its stats run), so `-x` stops at the first cheap failing test (mutmut hands
# them over in set order, so a slow test, a real build, would otherwise often run first); and the
# scrubber's fold table is built once in mutmut's fork server rather than once per mutant.
cat > mutmut_order.py <<'PYEOF'
import json
from pathlib import Path

_durations = None


def pytest_configure(config):
    # the scrubber's 1.1M-entry fold table (0.25 s): built once in mutmut's fork server, not per mutant
    from pinfeatures.build.scrub import _fold_table

    _fold_table()


def pytest_collection_modifyitems(items):
    global _durations
    if _durations is None:
        stats = Path("mutmut-stats.json")  # mutmut runs pytest inside mutants/
        if not stats.exists():
            return  # the stats run itself
        _durations = json.loads(stats.read_text(encoding="utf-8")).get("duration_by_test", {})
    items.sort(key=lambda item: _durations.get(item.nodeid, 0.0))
PYEOF
started=$(date +%s)
# -- hand-written mutants: file | text | replacement | tests (pytest arguments) -------------------
SQL_TESTS="tests/build/test_aggregate.py tests/build/test_queries_table.py tests/test_properties.py -k 'aggregate or queries or below_k or board or top'"
cat > "$WORK/hand_mutants.txt" <<'EOF'
sql/query_pairs.sql|ELSE p.engaged_events END) >= $min_users|ELSE p.engaged_events END) > $min_users|SQL
sql/query_pairs.sql|p.engaged_events > 0|p.engaged_events >= 0|SQL
sql/query_pairs.sql|coalesce(u.users, 0) ELSE p.engaged_events|p.events ELSE p.engaged_events|SQL
sql/query_pairs.sql|WHERE m.query <> ''\nGROUP BY m.query|WHERE true\nGROUP BY m.query|SQL
sql/query_pairs.sql|WHERE m.query <> '';|WHERE false;|SQL
sql/query_pairs.sql|WHERE raw_query IN (SELECT raw_query FROM remap_moves);|WHERE false;|SQL
sql/query_pairs.sql|SELECT coalesce(m.query, r.raw_query) AS query, r.pin_id, r.country|SELECT r.raw_query AS query, r.pin_id, r.country|tests/build/test_shard.py -k fixtures
sql/query_pairs.sql|WHERE $use_users AND action <> 'impression' AND|WHERE $use_users AND|SQL
sql/query_pairs.sql|(engaged_events > 0 AND engaged_events >= $min_users)|(engaged_events > 0 AND engaged_events > $min_users)|SQL
sql/query_pairs.sql|SELECT query AS raw_query, query\nFROM candidates;|SELECT query AS raw_query, query\nFROM candidates WHERE false;|SQL
sql/query_norm.sql|AND NOT contains(raw_query, $normal_excluded_word))|)|SQL
sql/query_norm.sql|AND NOT (length(raw_query) <= $normal_max_chars|AND NOT (true|SQL
sql/query_pairs.sql|WHERE m.query = '';|WHERE true;|SQL
sql/query_pairs.sql|SELECT v.query, v.pin_id, min(v.country) AS country|SELECT v.query, v.pin_id, max(v.country) AS country|SQL
sql/query_pairs.sql|max(events) AS events FROM country_votes|min(events) AS events FROM country_votes|SQL
sql/top_queries.sql|ORDER BY score DESC, query ASC|ORDER BY score DESC, query DESC|SQL
sql/top_queries.sql|ORDER BY score DESC, query ASC|ORDER BY score ASC, query ASC|SQL
sql/top_queries.sql|FROM passing_pairs|FROM query_pairs|SQL
sql/board_titles.sql|saves * 1000000000 - title_rank|saves * 1000000000 + title_rank|SQL
sql/board_titles.sql|saves * 1000000000 - title_rank|title_rank|SQL
sql/board_titles.sql|WHERE title <> ''|WHERE true|SQL
sql/queries.sql|ORDER BY score DESC, pin_id ASC|ORDER BY score DESC, pin_id DESC|SQL
sql/query_parts.sql|lower(trim(locale)) AS locale, sum(events) AS n|lower(trim(locale)) AS locale, count(*) AS n|SQL
sql/query_parts.sql|FROM query_pairs WHERE $all_queries|FROM query_pairs WHERE false|SQL
pinfeatures/build/scrub.py|(?:{_SEP}[0-9]){{8,}}|(?:{_SEP}[0-9]){{9,}}|tests/build/test_scrub.py
pinfeatures/build/scrub.py|"phone_local": r"{_B}[0-9]{3}[.\-][0-9]{4}{_B}"|"phone_local": r"{_B}[0-9]{3}[\-][0-9]{4}{_B}"|tests/build/test_scrub.py
pinfeatures/build/scrub.py|(?:\.[0-9]{1,3}){3}{_B}|(?:\.[0-9]{1,3}){2}{_B}|tests/build/test_scrub.py
pinfeatures/build/scrub.py|"email": r"[\w.+\-']+ ?@ ?|"email": r"[\w.+\-']+@ ?|tests/build/test_scrub.py
pinfeatures/build/scrub.py|if sum(sizes) in (7, 8) and|if sum(sizes) in (8,) and|tests/build/test_scrub.py
pinfeatures/build/scrub.py|and sizes[0] <= 4 and|and sizes[0] <= 3 and|tests/build/test_scrub.py
pinfeatures/build/scrub.py|and min(sizes[1:]) >= 2:|and min(sizes[1:]) >= 3:|tests/build/test_scrub.py
pinfeatures/build/scrub.py|for parts in range(2, 5):|for parts in range(2, 4):|tests/build/test_scrub.py
pinfeatures/build/scrub.py|if sizes in ((4, 2, 2), (2, 2, 4)) else|if sizes in ((4, 2, 2),) else|tests/build/test_scrub.py
pinfeatures/build/scrub.py|[0-9]{2} ?[a-d]{_B}"|[0-9]{2} ?[a-b]{_B}"|tests/build/test_scrub.py
pinfeatures/build/scrub.py|"ipv6": r"{_B}[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){7}|"ipv6": r"{_B}[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){6}|tests/build/test_scrub.py
pinfeatures/build/scrub.py| at [\w\-]+(?: dot [\w\-]+)* dot (?:{_TLDS})| at [\w\-]+ dot (?:{_TLDS})|tests/build/test_scrub.py
pinfeatures/build/scrub.py|"url_www": r"{_B}www\d{0,3}\.\S+"|"url_www": r"{_B}www\.\S+"|tests/build/test_scrub.py
pinfeatures/build/scrub.py|_ASCII_BUT_AMPERSAND_PATTERN = r"^[\x00-\x25\x27-\x7f]*$"|_ASCII_BUT_AMPERSAND_PATTERN = r"^[\x00-\x7f]*$"|tests/build/test_scrub.py -k 'column_fold_t'
pinfeatures/build/scrub.py|_CAPITAL_OR_ASCII_CONTROL_PATTERN = r"[A-Z\x00-\x1f\x7f]"|_CAPITAL_OR_ASCII_CONTROL_PATTERN = r"[A-Z\x00-\x1f]"|tests/build/test_scrub.py -k 'column_fold_t'
pinfeatures/build/scrub.py|_ASCII_CONTROL_PATTERN = r"[\x00-\x1f\x7f]"|_ASCII_CONTROL_PATTERN = r"[\x00-\x1f]"|tests/build/test_scrub.py -k 'column_fold_t'
pinfeatures/caption/backends.py|, "min_new_tokens": cfg.min_new_tokens}|}|tests/caption/test_backends.py -k 'fingerprint or coca'
pinfeatures/caption/backends.py|"num_beams": cfg.num_beams, |"num_beams": 1, |tests/caption/test_backends.py -k 'fingerprint or coca'
EOF
hand_killed=0
hand_total=0
hand_survivors=()
while IFS='|' read -r file old new tests; do
    [ -n "$file" ] && [ "${HAND_MUTANTS:-1}" != 0 ] || continue
    [ "$tests" = "SQL" ] && tests="$SQL_TESTS"
    hand_total=$((hand_total + 1))
    cp "$file" "$WORK/original"
    if ! "$PY" - "$file" "$old" "$new" <<'PYEOF'
import sys
path, old, new = sys.argv[1], sys.argv[2].replace("\\n", "\n"), sys.argv[3].replace("\\n", "\n")
text = open(path, encoding="utf-8").read()
if text.count(old) != 1:
    sys.exit(f"hand mutant no longer applies ({text.count(old)} matches): {path}: {old!r}")
open(path, "w", encoding="utf-8").write(text.replace(old, new))
PYEOF
    then
        hand_survivors+=("STALE $file: $old")
        continue
    fi
    if eval timeout 900 "$PY" -m pytest -q -x -p no:cacheprovider "$tests" >/dev/null 2>&1; then
        hand_survivors+=("$file: '$old' -> '$new'")
    else
        hand_killed=$((hand_killed + 1))
    fi
    cp "$WORK/original" "$file"
done < "$WORK/hand_mutants.txt"

# -- mutmut, module by module (within what is left of MUTATION_TIMEOUT) ---------------------
toml_list() { local out="" x; for x in "$@"; do out+="\"$x\", "; done; echo "[${out%, }]"; }
cp pyproject.toml pyproject.orig
deadline=$((started + ${MUTATION_TIMEOUT:-5400}))
: > "$WORK/modules.tsv"
: > "$WORK/survivors.txt"
for module in "${MODULES[@]}"; do
    read -ra tests <<< "${TESTS_OF[$module]:?no tests listed for $module}"
    rm -rf mutants
    cp pyproject.orig pyproject.toml
    cat >> pyproject.toml <<EOF

[tool.mutmut]
source_paths = ["pinfeatures/"]
only_mutate = $(toml_list "$module")
also_copy = ["fixtures/", "sql/", "bench/", "docs/", "scripts/", "cli.py", "README.md", "architecture.md", "mutmut_order.py"]
pytest_add_cli_args_test_selection = $(toml_list "${tests[@]}")
pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "mutmut_order", "-q", "-x", "-m", "not slow", "--timeout=300"]
# torch and tokenizers are not fork-safe once their threads run: fork workers from a clean server
process_isolation = "forkserver"
# a mutant that makes a test loop or crawl is stopped after 6x its tests' measured time, not 15x
timeout_multiplier = 6.0
# error messages: mutmut turns their text into XX..XX noise (the tests check the messages that matter);
# an assert guards a programming error (its message is for the programmer)
do_not_mutate_patterns = ['^\\s*raise ', '^\\s*assert ']
EOF
    left=$((deadline - $(date +%s)))
    t0=$(date +%s)
    if [ "$left" -gt 0 ]; then
        echo "== mutmut: $module (tests: ${tests[*]}; jobs: $JOBS)" >&2
        # MUTANTS: only these (names or fnmatch patterns), e.g. a previous run's survivors after new tests
        read -ra only <<< "${MUTANTS:-}"
        timeout "$left" "$BIN/mutmut" run --max-children "$JOBS" ${only[@]+"${only[@]}"} >>"$WORK/mutmut.log" 2>&1 || echo "mutmut stopped on $module: exit $? (see its counts)" >&2
    fi
    "$BIN/mutmut" results --all true >"$WORK/results.txt" 2>/dev/null || true
    "$PY" - "$WORK/results.txt" "$BIN/mutmut" "$module" "$(( $(date +%s) - t0 ))" "$WORK/modules.tsv" "$WORK/survivors.txt" "${MUTANTS:-}" <<'PYEOF'
import collections, fnmatch, json, subprocess, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
results, mutmut, module, seconds, table, survivors_file, only = sys.argv[1:]
status = {}
for line in open(results, encoding="utf-8"):
    name, sep, st = line.strip().rpartition(": ")
    if sep and name and (not only or any(fnmatch.fnmatch(name, p) for p in only.split())):
        status[name] = st
counts = collections.Counter(status.values())
with open(table, "a", encoding="utf-8") as out:
    out.write(f"{module}\t{seconds}\t{json.dumps(dict(counts))}\n")
with open(survivors_file, "a", encoding="utf-8") as out:
    for name in sorted(n for n, s in status.items() if s in ("survived", "no tests", "suspicious", "segfault")):
        out.write(f"  {name} ({status[name]})\n")
        try:  # in this process: a `mutmut show` per survivor costs a second each
            diff = get_diff_for_mutant(name)
        except Exception:  # noqa: BLE001 - fall back to the command
            diff = subprocess.run([mutmut, "show", name], capture_output=True, text=True).stdout
        out.write("".join(f"      {line}\n" for line in diff.splitlines() if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))))
PYEOF
done
cp pyproject.orig pyproject.toml

# -- the score --------------------------------------------------------------------------------
"$PY" - "$WORK/modules.tsv" "$WORK/survivors.txt" "$hand_killed" "$hand_total" "$(( $(date +%s) - started ))" "${hand_survivors[@]+"${hand_survivors[@]}"}" <<'PYEOF'
import collections, json, sys
table, survivors_file, hand_killed, hand_total, seconds, *hand_survivors = sys.argv[1:]
total = collections.Counter()
all_killed = all_checked = 0
print("module: killed of checked (counts) in seconds")
for line in open(table, encoding="utf-8"):
    module, secs, counts = line.rstrip("\n").split("\t")
    counts = collections.Counter(json.loads(counts))
    if not counts:
        print(f"  {module}: not run (MUTATION_TIMEOUT spent)")
        continue
    total += counts
    killed = counts["killed"] + counts["timeout"]
    checked = sum(n for s, n in counts.items() if s not in ("not checked", "skipped"))
    all_killed, all_checked = all_killed + killed, all_checked + checked
    unfinished = f", {counts['not checked']} NOT CHECKED: stopped by MUTATION_TIMEOUT" if counts["not checked"] else ""
    print(f"  {module}: killed {killed} of {checked} {dict(sorted(counts.items()))} in {secs} s{unfinished}")
print(f"mutmut: killed {all_killed} of {all_checked}" + (f" ({total['not checked']} not checked)" if total["not checked"] else ""))
print(f"hand-written: killed {hand_killed} of {hand_total}")
total_killed, total_n = all_killed + int(hand_killed), all_checked + int(hand_total)
print(f"killed {total_killed} of {total_n} ({100 * total_killed / max(total_n, 1):.1f}%) in {int(seconds) // 60} min")
print("survivors:")
print(open(survivors_file, encoding="utf-8").read(), end="")
for s in hand_survivors:
    print(f"  {s}")
PYEOF
if [ -n "${KEEP_MUTANTS:-}" ]; then trap - EXIT; echo "work folder kept: $WORK" >&2; fi
