"""The README's "Write your own probe" recipe, run as written, on a decoder and on the recursive model."""

import json
import re
import sys
from pathlib import Path

import pytest
import torch

from grokkit.cli import main

ROOT = Path(__file__).resolve().parents[1]
RECURSIVE = "model:\n  network:\n    class_path: grokkit.models.Recursive\n    init_args: {d_model: 32, H_cycles: 1, L_cycles: 1}\n"


def readme_block(language: str, containing: str) -> str:
    """The README's first fenced ``language`` block that contains ``containing``."""
    blocks = re.findall(rf"```{language}\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL)
    return next(block for block in blocks if containing in block)


@pytest.fixture
def recipe_repository(tmp_path, monkeypatch) -> Path:
    """A directory laid out as the README says: plugins/answer_confidence.py, answer_confidence.yaml."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "__init__.py").write_text("")
    (plugins / "answer_confidence.py").write_text(readme_block("python", "(plugins/answer_confidence.py)"))
    (plugins / "weight_norm.py").write_text((ROOT / "plugins" / "weight_norm.py").read_text())
    (tmp_path / "answer_confidence.yaml").write_text(readme_block("yaml", "AnswerConfidenceProbe"))
    (tmp_path / "recursive.yaml").write_text(RECURSIVE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [name for name in sys.modules if name == "plugins" or name.startswith("plugins.")]:
        monkeypatch.delitem(sys.modules, name)  # this directory's plugins/, not the repository's
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("family", ["decoder", "recursive"])
def test_readme_probe_recipe_runs_as_written(recipe_repository, family):
    command = readme_block("bash", "--config answer_confidence.yaml").split()
    assert command[:2] == ["grokkit", "fit"] and command[2:4] == ["--config", "configs/default.yaml"]
    main(
        [
            "fit",
            "--config", str(ROOT / "configs/tiny.yaml"),  # the README stacks on default.yaml: a 16,000-step run
            *(["--config", "recursive.yaml"] if family == "recursive" else []),
            *command[4:],  # --config answer_confidence.yaml
            "--trainer.callbacks+=plugins.weight_norm.WeightNorm",  # the shipped example, on both families
            "--trainer.max_steps=20",
        ]
    )  # fmt: skip
    run = recipe_repository / "runs" / "tiny" / "version_0"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["answer_confidence"]["step"] == 20
    assert (
        0.0 < summary["answer_confidence"]["p_answer"] < 1.0
        and 0.0 <= summary["answer_confidence"]["top1"] <= 1.0
    )
    norms = [summary["weight_norm"][f"state_norm/stage{stage}"] for stage in range(3)]  # both have 3 stages
    assert all(norm > 0 for norm in norms) and summary["weight_norm"]["total"] > 0
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert any(key.startswith("net.level.") for key in saved["state_dict"]) == (family == "recursive")
