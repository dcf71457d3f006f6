"""Settings: defaults, TOML file + flags precedence, a same-named key for every flag of every command,
"did you mean", bounds on every number, checks before any data is read, absolute paths, and the
user's action vocabulary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import polars as pl
import pytest

from pinfeatures.build.settings import BuildSettings
from pinfeatures.caption.settings import CaptionSettings
from pinfeatures.cli import SETTINGS, cli
from pinfeatures.contracts import DEFAULT_ACTION_WEIGHTS
from pinfeatures.errors import ConfigError
from pinfeatures.settings import TABLES, load_settings
from tests.conftest import REPO, build, small_tables, write_inputs

DEFAULT_WEIGHTS = {"impression": 0.0, "closeup": 0.5, "click": 1.0, "long_click": 2.0, "save": 3.0}


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.toml"
    p.write_text(text, encoding="utf-8")
    return p


def build_cfg(config=None, **flags) -> BuildSettings:
    return load_settings(config, {"": BuildSettings}, {"": flags})[""]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / "cli.py"), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def test_defaults():
    cfg = BuildSettings()
    assert (cfg.variants, cfg.board_top_k, cfg.query_top_k, cfg.min_users, cfg.max_tokens) == ("ladder", 5, 5, 3, 512)
    assert dict(cfg.action_weights) == DEFAULT_WEIGHTS == DEFAULT_ACTION_WEIGHTS
    assert cfg.caption.caption_model is None and cfg.caption.batch_size == 16
    assert build_cfg() == cfg
    # the manifest records the settings as JSON: plain values, tuples as lists, the [caption] table nested
    recorded = json.loads(json.dumps(cfg.to_dict()))
    assert (recorded["min_users"], recorded["action_weights"], recorded["source_order"]) == (
        3, DEFAULT_WEIGHTS, ["title", "description", "caption", "boards", "queries"])
    assert (recorded["caption"]["caption_model"], recorded["caption"]["max_new_tokens"]) == (None, 30)
    assert "evaluate" not in recorded and "report" not in recorded  # other commands' settings are not the build's


def test_toml_then_flags_precedence(tmp_path):
    p = write(tmp_path, 'variants = "loo"\nboard_top_k = 7\nmin_users = 5\nmax_tokens = 100\n'
                        '[caption]\ncaption_model = "demo"\nbatch_size = 4\n[report]\nsample_pins = 3\n[evaluate]\nndcg_k = 3\n')
    s = SETTINGS["build"](p, min_users=2, max_tokens=None, variants=None, caption_model="other", out="o")
    cfg = s[""]
    assert cfg.variants == "loo" and cfg.board_top_k == 7  # file (flag unset)
    assert cfg.min_users == 2  # flag beats file
    assert cfg.max_tokens == 100  # None flag is "not given"
    assert cfg.caption.caption_model == "other" and cfg.caption.batch_size == 4  # a caption flag merges into [caption]
    assert s["report"].sample_pins == 3
    assert set(s) == {"", "report"}  # build makes no evaluate settings ([evaluate] is another command's)
    assert cfg.out == os.path.abspath("o") and cfg.query_top_k == 5


def test_partial_tables_merge_with_defaults(tmp_path):
    cfg = build_cfg(write(tmp_path, '[action_weights]\nsave = 5\nclick = 1.5\n[labels]\ntitle = "Name"\n[max_tokens_per_source]\ndescription = 10\n'))
    assert dict(cfg.action_weights) == {**DEFAULT_WEIGHTS, "save": 5.0, "click": 1.5}
    assert isinstance(cfg.action_weights["save"], float)
    assert cfg.labels["title"] == "Name" and cfg.labels["caption"] == "Image"
    assert cfg.max_tokens_per_source["description"] == 10 and cfg.max_tokens_per_source["title"] == 48


def test_source_order_from_toml_and_comma_string(tmp_path):
    cfg = build_cfg(write(tmp_path, 'source_order = ["caption", "title", "description", "boards", "queries"]\n'))
    assert cfg.source_order == ("caption", "title", "description", "boards", "queries")
    assert build_cfg(source_order="queries, boards, caption, description, title").source_order == ("queries", "boards", "caption", "description", "title")


@pytest.mark.parametrize(
    "toml, message",
    [
        ("[action_weights]\nsave = -1\n", "action_weights.save must be between 0 and 1e+06, got -1"),
        ("[action_weights]\nsave = 'a lot'\n", "action_weights.save must be a number"),
        ("[action_weights]\nsave = nan\n", "action_weights.save must be a finite number, got nan"),
        ("[action_weights]\nsave = inf\n", "action_weights.save must be a finite number, got inf"),
        ("[action_weights]\nsave = -inf\n", "action_weights.save must be a finite number, got -inf"),
        ("[action_weights]\nsave = 1e300\n", "action_weights.save must be between 0 and 1e+06, got 1e+300"),
        ("[action_weights]\n' Repin' = 1\n", "action names are lower case without surrounding spaces"),
        ("min_users = -1\n", "min_users must be between 1 and 1000000, got -1"),
        ("min_users = 0\n", "min_users must be between 1 and 1000000, got 0"),
        ("board_top_k = -3\n", "board_top_k must be between 1 and 10000, got -3"),
        ("board_top_k = 9223372036854775807\n", "board_top_k must be between 1 and 10000, got 9223372036854775807"),
        ("query_top_k = 0\n", "query_top_k must be between 1 and 10000"),
        ("max_tokens = 0\n", "max_tokens must be between 1 and 1000000, got 0"),
        ("language_min_confidence = nan\n", "language_min_confidence must be a finite number, got nan"),
        ("query_bands = [0.8, 0.5]\n", "query_bands must be increasing shares strictly between 0 and 1, got [0.8, 0.5]"),
        ("board_top_k = 'five'\n", "board_top_k must be an integer"),
        ("board_top_k = 2.5\n", "board_top_k must be an integer"),
        ("board_top_k = true\n", "board_top_k must be an integer"),
        ("quiet = 'yes'\n", "quiet must be true or false"),
        ("source_order = ['title', 'title', 'caption', 'boards', 'queries']\n", "source_order must name each of"),
        ("[labels]\ntitle = '  '\n", "labels.title is missing or empty"),
        ("[max_tokens_per_source]\ntitle = 0\n", "max_tokens_per_source.title must be between 1 and 1000000, got 0"),
        ("[max_tokens_per_source]\npictures = 3\n", "max_tokens_per_source must give each of"),
        ("field_separator = ''\n", "field_separator and list_separator must not be empty"),
        ("caption = 'demo'\n", "caption must be a table"),
        ("[labels]\ntitle = 5\n", "labels.title must be a string"),
        ("[max_tokens_per_source]\ntitle = 2.5\n", "max_tokens_per_source.title must be an integer"),
        ("[caption]\nbatch_size = 0\n", "caption.batch_size must be between 1 and 4096, got 0"),
        ("[caption]\nfetch_timeout_s = nan\n", "caption.fetch_timeout_s must be a finite number"),
        ("[caption]\ndtype = 'float8'\n", "caption.dtype must be one of auto, float32, bfloat16, float16; got 'float8'"),
        ("[caption]\ndevice = 'tpu'\n", "caption.device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
        ("[caption]\nmax_new_tokens = 3\nmin_new_tokens = 5\n", "caption.min_new_tokens must be between 0 and max_new_tokens (3), got 5"),
        ("[caption]\ncaption_model = ' '\n", "caption.caption_model is empty"),
    ],
)
def test_bad_values_rejected(tmp_path, toml, message):
    with pytest.raises(ConfigError) as err:
        build_cfg(write(tmp_path, toml))
    assert message in str(err.value)


@pytest.mark.parametrize(
    "command, toml, message",
    [
        ("evaluate", "[evaluate]\nconfidence = 1.0\n", "evaluate.confidence must be in (0, 1), got 1.0"),
        ("evaluate", "[evaluate]\nscorers = ['lexical', 'magic']\n", "evaluate.scorers must be one of lexical, semantic; got 'magic'"),
        ("evaluate", "[evaluate]\nscorers = []\n", "evaluate.scorers must name at least one"),
        ("evaluate", "[evaluate]\nbm25_b = 1.5\n", "evaluate.bm25_b must be between 0 and 1, got 1.5"),
        ("evaluate", "[evaluate]\nndcg_k = 9223372036854775807\n", "evaluate.ndcg_k must be between 1 and 10000"),
        ("pairs", "[pairs]\nbands = [0.8, 0.5]\n", "pairs.bands must be increasing shares strictly between 0 and 1"),
        ("pairs", "[pairs]\nbands = 'half'\n", "pairs.bands must be a comma list of numbers, got 'half'"),
        ("pairs", "[pairs]\nsample = 0\n", "pairs.sample must be between 1 and 1000000000, got 0"),
        ("pairs", "[pairs]\nallocation = 'per_stratum'\n", "--allocation per_stratum needs --per-stratum-size N"),
        ("report", "[report]\nthumbnail_px = 8\n", "report.thumbnail_px must be between 16 and 1024, got 8"),
        ("report", "[report]\nthumbnail_format = 'gif'\n", "report.thumbnail_format must be one of webp, jpeg; got 'gif'"),
        ("report", "[report]\npins = ['p1', ' ']\n", "report.pins must be non-empty pin ids"),
    ],
)
def test_bad_stage_values_rejected(tmp_path, command, toml, message):
    with pytest.raises(ConfigError) as err:
        SETTINGS[command](write(tmp_path, toml))
    assert message in str(err.value)


def test_unknown_keys_get_did_you_mean_and_only_their_tables_keys(tmp_path):
    with pytest.raises(ConfigError) as err:
        build_cfg(write(tmp_path, "board_topk = 3\n"))
    msg = str(err.value)
    assert "unknown setting 'board_topk' at the top level; did you mean 'board_top_k'?" in msg
    assert "batch_size" not in msg  # the [caption] keys are not the top level's
    with pytest.raises(ConfigError) as err:
        build_cfg(write(tmp_path, "[caption]\ncaption_modle = 'x'\n"))
    msg = str(err.value)
    assert "unknown setting 'caption_modle' in [caption]; did you mean 'caption_model'?" in msg
    assert "batch_size" in msg and "board_top_k" not in msg and "min_users" not in msg
    # a [caption] key written at the top level: say where it goes
    with pytest.raises(ConfigError, match=r"'caption_model' at the top level; it is a \[caption\] setting: put it under \[caption\]"):
        build_cfg(write(tmp_path, "caption_model = 'demo'\n"))
    # the old name of min_users is suggested
    with pytest.raises(ConfigError, match="did you mean 'min_users'"):
        build_cfg(write(tmp_path, "query_min_users = 2\n"))
    with pytest.raises(ConfigError, match=r"unknown setting 'ndcg' in \[evaluate\]; did you mean 'ndcg_k'\?"):
        SETTINGS["evaluate"](write(tmp_path, "[evaluate]\nndcg = 5\n"))
    with pytest.raises(ConfigError, match="unknown setting 'evalute'"):
        SETTINGS["evaluate"](write(tmp_path, "[evalute]\nndcg_k = 5\n"))
    # a command reads its own table: the build's top-level keys do not bother `evaluate`
    assert SETTINGS["evaluate"](write(tmp_path, "board_top_k = 3\n[evaluate]\nndcg_k = 5\n"))["evaluate"].ndcg_k == 5


def test_missing_and_invalid_toml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        build_cfg(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        build_cfg(write(tmp_path, "board_top_k = = 3\n"))


# -- every flag of every command has a same-named key ------------------------------------------

# A valid sample value per flag whose type alone does not give one, and settings a flag needs beside it.
SAMPLES = {
    "variants": "title,caption+title", "scorers": "lexical", "bands": "0.3,0.7", "device": "cpu", "dtype": "float32",
    "caption_model": "demo", "allocation": "equal", "gain": "linear", "format": "jsonl",
    "confidence": 0.9, "bm25_b": 0.5, "thumbnail_px": 64, "encoding": "latin-1", "threshold": 3.0, "memory_limit": "2GiB",
}
EXPECTED = {"bands": (0.3, 0.7), "scorers": ("lexical",)}
COMPANIONS = {
    "per_stratum_size": {"allocation": "per_stratum"},
    "pilot": {"allocation": "neyman"},
    "control": {"treatment": "/tmp/pinfeatures-settings-test-treatment"},
    "treatment": {"control": "/tmp/pinfeatures-settings-test-control"},
    "engine": {"shards": 2},
}


def _sample(param: click.Parameter):
    if param.multiple:
        return ("p1", "p2")
    if param.name in SAMPLES:
        return SAMPLES[param.name]
    if getattr(param, "is_flag", False):
        return True
    if isinstance(param.type, click.types.IntParamType):
        return 7
    if isinstance(param.type, click.types.FloatParamType):
        return 0.25
    if isinstance(param.type, click.Choice):
        return param.type.choices[-1]
    if isinstance(param.type, click.Path):
        return "/tmp/pinfeatures-settings-test"
    return "x"


def _flatten(settings: dict) -> dict[tuple[str, str], object]:
    """{(table, setting): value} over a command's settings, nested tables ([caption] in the build's) included."""
    flat = {}
    for table, obj in settings.items():
        for name in obj.__dataclass_fields__:
            value = getattr(obj, name)
            if hasattr(value, "__dataclass_fields__"):
                flat.update({(name, k): getattr(value, k) for k in value.__dataclass_fields__})
            else:
                flat[(table, name)] = value
    return flat


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(json.dumps(v) for v in value) + "]"
    return json.dumps(value)


COMMAND_PARAMS = [(name, p) for name, cmd in cli.commands.items() if name in SETTINGS for p in cmd.params if p.name not in ("config", "help")]


@pytest.mark.parametrize("command, param", COMMAND_PARAMS, ids=[f"{c}--{p.name}" for c, p in COMMAND_PARAMS])
def test_every_flag_has_a_same_named_key(tmp_path, command, param):
    # the flag's own name is the key (with _ for -); older spellings stay as aliases
    assert param.opts[0] == "--" + param.name.replace("_", "-")
    value = _sample(param)
    expected = EXPECTED.get(param.name, value)
    expected = os.path.abspath(expected) if isinstance(param.type, click.Path) else expected
    make = SETTINGS[command]
    params = cli.commands[command].params
    unset = {p.name: (() if p.multiple else None) for p in params if p.name != "config"}
    companions = COMPANIONS.get(param.name, {})

    # the flag sets exactly one setting, named like the flag
    args = [param.opts[0]] if getattr(param, "is_flag", False) else sum(([param.opts[0], str(v)] for v in (value if isinstance(value, tuple) else (value,))), [])
    ctx = cli.commands[command].make_context(command, args)
    flagged = _flatten(make(**{**ctx.params, **companions}))
    baseline = _flatten(make(**unset))
    changed = [k for k in flagged if flagged[k] != baseline[k] and k[1] not in companions]
    assert len(changed) == 1 and changed[0][1] == param.name and flagged[changed[0]] == expected, changed

    # and the same-named key in that setting's table sets it too
    table = changed[0][0]
    text = (f"[{table}]\n" if table else "") + f"{param.name} = {_toml_value(value)}\n"
    from_file = _flatten(make(write(tmp_path, text), **{**unset, **companions}))
    assert from_file[changed[0]] == expected


def test_every_command_takes_quiet():
    for name, cmd in cli.commands.items():
        opts = {o for p in cmd.params for o in p.opts + p.secondary_opts}
        assert {"-q", "--quiet"} <= opts, name


# -- one-line errors, before any data is read -----------------------------------------------


@pytest.mark.parametrize(
    "args, toml, message",
    [
        (["--max-tokens", "99999999999999999999999"], "", "max_tokens must be between 1 and 1000000, got 99999999999999999999999"),
        ([], "board_top_k = 9223372036854775807\n", "board_top_k must be between 1 and 10000, got 9223372036854775807"),
        ([], "[action_weights]\nsave = nan\n", "action_weights.save must be a finite number, got nan"),
        ([], "[action_weights]\nsave = 1e300\n", "action_weights.save must be between 0 and 1e+06, got 1e+300"),
        ([], "[caption]\nbatch_size = 0\n", "caption.batch_size must be between 1 and 4096, got 0"),
        (["--min-users", "0"], "", "min_users must be between 1 and 1000000, got 0"),
    ],
)
def test_cli_settings_errors_are_one_line_and_come_before_any_read(tmp_path, args, toml, message):
    # the input does not exist: a build that got as far as reading would report that instead
    cfg = write(tmp_path, toml)
    res = run_cli("build", "--input", str(tmp_path / "no-such-input"), "--out", str(tmp_path / "out"), "--config", str(cfg), *args)
    assert res.returncode == 2, res.stderr
    assert res.stderr == f"pinfeatures: error: {message}\n"
    assert not (tmp_path / "out").exists()


def test_bad_caption_batch_size_fails_before_the_read_stage(tmp_path):
    res = run_cli("build", "--input", str(REPO / "fixtures" / "input"), "--out", str(tmp_path / "out"), "--caption-model", "demo",
                  "--config", str(write(tmp_path, "[caption]\nbatch_size = -4\n")))
    assert res.returncode == 2
    assert "[pinfeatures] read" not in res.stderr  # no stage started
    assert res.stderr.strip().splitlines() == ["pinfeatures: error: caption.batch_size must be between 1 and 4096, got -4"]


def test_other_commands_check_settings_before_reading(tmp_path):
    missing = str(tmp_path / "nothing")
    for args, message in [
        (["evaluate", "--build", missing, "--judgments", missing, "--ndcg-k", "0"], "evaluate.ndcg_k must be between 1 and 10000, got 0"),
        (["pairs", "--build", missing, "--sample", "5", "--bands", "0.5,x"], "pairs.bands must be a comma list of numbers, got 'x'"),
        (["report", "--build", missing, "--thumbnail-px", "99999999999999999999"], "report.thumbnail_px must be between 16 and 1024"),
        (["caption", "--input", missing, "--caption-model", "demo", "--batch-size", "0"], "caption.batch_size must be between 1 and 4096, got 0"),
    ]:
        res = run_cli(*args)
        assert res.returncode == 2 and len(res.stderr.splitlines()) == 1 and message in res.stderr, (args, res.stderr)


# -- absolute paths and the user's action vocabulary --------------------------------------------


def test_paths_are_absolute_in_settings_and_manifest(tmp_path):
    write_inputs(tmp_path / "in", small_tables())
    res = run_cli("build", "--input", "in", "--out", "out", "--cache", "cache", "-q", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["config"]["input"] == str(tmp_path / "in")
    assert manifest["config"]["out"] == str(tmp_path / "out")
    assert manifest["config"]["caption"]["cache"] == str(tmp_path / "cache")
    cap = CaptionSettings(caption_model=str(REPO / "fixtures" / "models" / "demo-captioner"), caption_weights="w.safetensors")
    assert cap.caption_weights == os.path.abspath("w.safetensors")
    assert CaptionSettings(caption_model="demo").caption_model == "demo"  # not a path
    assert CaptionSettings(caption_model="org/some-model").caption_model == "org/some-model"  # a hub id stays one


def test_actions_named_in_action_weights_are_known(tmp_path):
    tables = small_tables()
    extra = [{"query": "repin me", "pin_id": "p2", "action": "Repin", "user_id": u} for u in ("u1", "u2", "u3")]
    extra.append({"query": "poke", "pin_id": "p2", "action": "poke", "user_id": "u1"})
    tables["engagements"] = pl.concat([tables["engagements"], pl.DataFrame(extra)])
    folder = write_inputs(tmp_path / "in", tables)
    default = build(tmp_path / "a" / "out", input=str(folder))
    assert default["rejects"]["engagements"] == {"unknown_action": 4}
    custom = build(tmp_path / "b" / "out", input=str(folder), action_weights={**DEFAULT_ACTION_WEIGHTS, "repin": 3.0})
    assert custom["rejects"]["engagements"] == {"unknown_action": 1}  # only `poke`
    features = pl.read_parquet(tmp_path / "b" / "out" / "features.parquet")
    assert features.filter(pl.col("pin_id") == "p2").get_column("queries").to_list() == [["repin me", "garden"]]
    rejects = pl.read_parquet(tmp_path / "b" / "out" / "rejects.parquet")
    assert rejects.get_column("detail").to_list() == ["known actions: impression, click, closeup, save, long_click, repin"]
