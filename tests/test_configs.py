"""Every shipped config parses, and the paper-scale models build with the sizes the papers report."""

from pathlib import Path

import pytest
import yaml

from grokkit.cli import GrokkitCLI, main
from grokkit.data import TwoHopDataModule
from grokkit.train.module import GrokModule

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
OVERLAYS = {"wang2024": "composition.yaml", "he2026": "natural.yaml", "study": "base_cpu.yaml"}
CPU_REGIMES = [CONFIGS / "default.yaml", CONFIGS / "cpu_regimes.yaml"]  # an overlay of the default
TRANSFER = [  # overlays of a finished run's config, here of the config it was trained with
    [CONFIGS / "default.yaml", CONFIGS / "transfer/cpu.yaml"],
    [CONFIGS / "he2026/natural.yaml", CONFIGS / "transfer/he2026.yaml"],
]
STANDALONE = sorted(path for path in CONFIGS.glob("*.yaml") if path != CPU_REGIMES[1])


def stacks() -> list[list[Path]]:
    """Standalone configs alone; overlays on top of their study's base config."""
    result = [[path] for path in STANDALONE]
    result += [CPU_REGIMES, [*CPU_REGIMES, CONFIGS / "he2026/second_hop_full.yaml"], *TRANSFER]
    result += [[CONFIGS / "default.yaml", path] for path in sorted((CONFIGS / "demo").glob("*.yaml"))]
    for study, base in OVERLAYS.items():
        result += [[CONFIGS / study / base]]
        result += [
            [CONFIGS / study / base, path]
            for path in sorted((CONFIGS / study).glob("*.yaml"))
            if path.name != base
        ]
    return result


def build(paths: list[Path], tmp_path: Path) -> GrokkitCLI:
    args = [arg for path in paths for arg in ("--config", str(path))]
    args += [f"--data.data_dir={tmp_path}", f"--trainer.logger.init_args.save_dir={tmp_path}"]
    return GrokkitCLI(GrokModule, TwoHopDataModule, args=args, run=False, auto_configure_optimizers=False)


@pytest.mark.parametrize("paths", stacks(), ids=lambda paths: "+".join(p.stem for p in paths))
def test_config_parses(paths, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *[arg for path in paths for arg in ("--config", str(path))], "--print_config"])
    assert exit_info.value.code in (0, None)
    resolved = yaml.safe_load(capsys.readouterr().out)
    overlay = yaml.safe_load(paths[-1].read_text())
    for key, value in overlay.get("data", {}).items():  # the last file wins
        assert resolved["data"][key] == value


@pytest.mark.parametrize(
    "paths",
    [[path] for path in STANDALONE] + [CPU_REGIMES, [CONFIGS / "study/base_cpu.yaml"]],
    ids=lambda p: p[-1].stem,
)
def test_cpu_config_builds(paths, tmp_path):
    cli = build(paths, tmp_path)
    assert cli.model.hparams.vocab_size == cli.datamodule.vocab_size


def test_paper_scale_model_sizes(tmp_path):
    def n_params(cli):
        return sum(p.numel() for p in cli.model.net.parameters())

    recursive = build([CONFIGS / "he2026/natural.yaml"], tmp_path)
    assert recursive.model.net.n_stages == 15 and 44e6 < n_params(recursive) < 45.5e6  # He et al.: ~44.56M
    wang = build([CONFIGS / "wang2024/composition.yaml"], tmp_path)
    blocks = sum(p.numel() for p in wang.model.net.blocks.parameters())
    assert blocks == 8 * 7_087_872  # Wang et al.: 8 GPT-2 blocks of 7.09M
    shared = build([CONFIGS / "wang2024/composition.yaml", CONFIGS / "wang2024/shared.yaml"], tmp_path)
    assert shared.model.net.n_stages == 9 and len(shared.model.net.blocks) == 4
