"""Config: defaults, TOML file + flags precedence, merging of tables, and rejected settings."""

from __future__ import annotations

import json

import pytest

from pinfeatures.config import BuildConfig, make_config
from pinfeatures.errors import ConfigError

DEFAULT_WEIGHTS = {"impression": 0.0, "closeup": 0.5, "click": 1.0, "long_click": 2.0, "save": 3.0}


def write(tmp_path, text: str):
    p = tmp_path / "cfg.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_defaults():
    cfg = make_config()
    assert cfg == BuildConfig()
    assert (cfg.variants, cfg.board_top_k, cfg.query_top_k, cfg.query_min_users, cfg.max_tokens) == ("ladder", 5, 5, 3, 512)
    assert dict(cfg.action_weights) == DEFAULT_WEIGHTS
    assert cfg.caption.model is None
    # the manifest records the settings as JSON: plain values, tuples as lists, the tables nested
    recorded = json.loads(json.dumps(cfg.to_dict()))
    assert (recorded["query_min_users"], recorded["action_weights"], recorded["source_order"]) == (
        3, DEFAULT_WEIGHTS, ["title", "description", "caption", "boards", "queries"])
    assert (recorded["caption"]["model"], recorded["caption"]["max_new_tokens"], recorded["evaluate"]["ndcg_k"]) == (None, 30, 10)


def test_toml_then_flags_precedence(tmp_path):
    p = write(
        tmp_path,
        """
variants = "loo"
board_top_k = 7
query_min_users = 5
max_tokens = 100
[caption]
model = "demo"
batch_size = 4
[report]
sample_pins = 3
""",
    )
    cfg = make_config(p, query_min_users=2, max_tokens=None, variants=None, caption__model="other", out="o")
    assert cfg.variants == "loo"  # file (flag unset)
    assert cfg.board_top_k == 7  # file
    assert cfg.query_min_users == 2  # flag beats file
    assert cfg.max_tokens == 100  # None flag is "not given"
    assert cfg.caption.model == "other" and cfg.caption.batch_size == 4  # nested flag merges into the table
    assert cfg.report_settings.sample_pins == 3  # [report] alias
    assert cfg.out == "o"
    assert cfg.query_top_k == 5  # default


def test_partial_action_weights_merge_with_defaults(tmp_path):
    p = write(tmp_path, "[action_weights]\nsave = 5\nclick = 1.5\n")
    cfg = make_config(p)
    assert dict(cfg.action_weights) == {**DEFAULT_WEIGHTS, "save": 5.0, "click": 1.5}
    assert isinstance(cfg.action_weights["save"], float)


def test_partial_labels_and_budgets_merge(tmp_path):
    p = write(tmp_path, '[labels]\ntitle = "Name"\n[max_tokens_per_source]\ndescription = 10\n')
    cfg = make_config(p)
    assert cfg.labels["title"] == "Name" and cfg.labels["caption"] == "Image"
    assert cfg.max_tokens_per_source["description"] == 10 and cfg.max_tokens_per_source["title"] == 48


def test_source_order_from_toml_and_comma_string(tmp_path):
    cfg = make_config(write(tmp_path, 'source_order = ["caption", "title", "description", "boards", "queries"]\n'))
    assert cfg.source_order == ("caption", "title", "description", "boards", "queries")
    cfg = make_config(None, source_order="queries, boards, caption, description, title")
    assert cfg.source_order == ("queries", "boards", "caption", "description", "title")


@pytest.mark.parametrize(
    "toml, message",
    [
        ("board_topk = 3\n", "unknown setting(s) ['board_topk']"),
        ("[caption]\nmodle = 'x'\n", "unknown setting(s) ['caption.modle']"),
        ("[action_weights]\npurchase = 1\n", "unknown action(s) ['purchase']"),
        ("[action_weights]\nsave = -1\n", "action_weights.save must be a number >= 0"),
        ("[action_weights]\nsave = 'a lot'\n", "action_weights.save must be a number"),
        ("query_min_users = -1\n", "query_min_users must be >= 1, got -1"),
        ("query_min_users = 0\n", "query_min_users must be >= 1, got 0"),
        ("board_top_k = -3\n", "board_top_k must be >= 1, got -3"),
        ("query_top_k = 0\n", "query_top_k must be >= 1"),
        ("max_tokens = 0\n", "max_tokens must be >= 1"),
        ("board_top_k = 'five'\n", "board_top_k must be an integer"),
        ("board_top_k = 2.5\n", "board_top_k must be an integer"),
        ("board_top_k = true\n", "board_top_k must be an integer"),
        ("quiet = 'yes'\n", "quiet must be true or false"),
        ("source_order = ['title', 'title', 'caption', 'boards', 'queries']\n", "source_order must name each of"),
        ("[labels]\ntitle = '  '\n", "labels.title is missing or empty"),
        ("[max_tokens_per_source]\ntitle = 0\n", "max_tokens_per_source.title"),
        ("field_separator = ''\n", "field_separator and list_separator must not be empty"),
        ("caption = 'demo'\n", "caption must be a table"),
        ("[labels]\ntitle = 5\n", "labels.title must be a string"),
        ("[max_tokens_per_source]\ntitle = 2.5\n", "max_tokens_per_source.title must be an integer"),
    ],
)
def test_bad_values_rejected(tmp_path, toml, message):
    with pytest.raises(ConfigError) as err:
        make_config(write(tmp_path, toml))
    assert message in str(err.value)


def test_bad_flag_values_rejected():
    with pytest.raises(ConfigError, match="query_min_users must be >= 1"):
        make_config(None, query_min_users=-2)
    with pytest.raises(ConfigError, match="unknown setting"):
        make_config(None, no_such_flag=1)
    with pytest.raises(ConfigError, match="board_top_k must be >= 1"):
        BuildConfig(board_top_k=0)


def test_missing_and_invalid_toml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        make_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        make_config(write(tmp_path, "board_top_k = = 3\n"))
