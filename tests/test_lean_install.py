"""The lean install: a build (report included) with torch, transformers, open_clip, safetensors and
tokenizers made unimportable, and one-line errors naming the extra for what needs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import FIXTURES, REPO

BLOCKER = '''
import os, sys, traceback
BLOCKED = {"torch", "transformers", "open_clip", "safetensors", "tokenizers"}

class Block:
    """Every import of a blocked library fails as if it were not installed; each import statement
    that tries is logged (a probe through importlib.util.find_spec, as polars makes, is not)."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            if not any(f.filename == "<frozen importlib.util>" for f in traceback.extract_stack()):
                with open(os.environ["LEAN_LOG"], "a") as log:
                    log.write(name + "\\n")
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Block())
'''


def lean(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER, encoding="utf-8")
    log = tmp_path / "imports.log"
    log.write_text("")
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{REPO}", "LEAN_LOG": str(log)}
    res = subprocess.run([sys.executable, str(REPO / "cli.py"), *args], capture_output=True, text=True, env=env, timeout=300)
    return res, log.read_text().split()


def test_the_blocker_blocks(tmp_path):
    site = tmp_path / "site"
    res, tried = lean(tmp_path, "variants", "ladder")
    assert res.returncode == 0
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{REPO}", "LEAN_LOG": str(tmp_path / "imports.log")}
    probe = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True, env=env, timeout=60)
    assert probe.returncode == 1 and "No module named 'torch'" in probe.stderr


def test_a_lean_build_with_its_report_never_imports_the_captioning_stack(tmp_path):
    out = tmp_path / "out"
    res, tried = lean(tmp_path, "build", "--input", str(FIXTURES / "input"), "--out", str(out), "--cache", str(tmp_path / "c"),
                      "--write-report", "-q")
    assert res.returncode == 0, res.stderr
    assert tried == []  # not even an attempt
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["outputs"]["features"]["rows"] == 300 and (out / "report.html").is_file()


def test_what_needs_an_extra_says_which_one_in_one_line(tmp_path):
    args = ["--input", str(FIXTURES / "input"), "--cache", str(tmp_path / "c")]
    res, _ = lean(tmp_path, "build", *args, "--out", str(tmp_path / "out"), "--caption-model", "demo")
    assert res.returncode == 2
    assert res.stderr == "pinfeatures: error: --caption-model needs torch, transformers, safetensors, not installed: pip install 'pinfeatures[caption]'\n"
    assert not (tmp_path / "out").exists()  # stopped before reading anything
    res, _ = lean(tmp_path, "caption", *args, "--out", str(tmp_path / "caps"), "--caption-model", "open_clip:coca_ViT-B-32")
    assert res.stderr == ("pinfeatures: error: --caption-model needs torch, transformers, safetensors, open_clip, not installed: "
                          "pip install 'pinfeatures[caption]'\n")
    tok = tmp_path / "tok"
    tok.mkdir()
    res, _ = lean(tmp_path, "build", *args, "--out", str(tmp_path / "out"), "--tokenizer", str(tok))
    assert res.returncode == 2
    assert res.stderr == "pinfeatures: error: --tokenizer needs transformers, tokenizers, not installed: pip install 'pinfeatures[caption]'\n"


def test_evaluate_without_the_eval_extra(tmp_path):
    out = tmp_path / "out"
    res, _ = lean(tmp_path, "build", "--input", str(FIXTURES / "input"), "--out", str(out), "--cache", str(tmp_path / "c"), "-q")
    assert res.returncode == 0, res.stderr
    judgments = str(FIXTURES / "input" / "judgments.csv")
    # the default scorers: semantic is skipped with the reason, lexical runs
    res, _ = lean(tmp_path, "evaluate", "--build", str(out), "--judgments", judgments, "--bootstrap-samples", "50", "-q")
    assert res.returncode == 0, res.stderr
    ablation = json.loads((out / "evaluation" / "ablation.json").read_text())
    assert ablation["skipped"]["semantic"] == "torch, transformers not installed (pip install 'pinfeatures[eval]')"
    # asked for by name, it is a one-line error
    res, _ = lean(tmp_path, "evaluate", "--build", str(out), "--judgments", judgments, "--scorers", "semantic", "-q")
    assert res.returncode == 2
    assert res.stderr == "pinfeatures: error: the semantic scorer needs torch, transformers, not installed: pip install 'pinfeatures[eval]'\n"
