"""The subcommands ``grokkit`` knows, and the overview ``grokkit --help`` prints."""

from __future__ import annotations

from grokkit.cli.invocation import DEBUG_ENV

# LightningCLI runs the trainer commands (its `predict` is left out: grokkit's models have no predict step);
# every other command is "module:function", called with the arguments after its name.
TRAINER_COMMANDS = {
    "fit": "train a model: grokkit fit --config CONFIG.yaml [--section.key value ...]",
    "validate": "evaluate a checkpoint and run every probe on it, at its step",
    "test": "evaluate a checkpoint on the evaluation splits, logged as test/... at its step",
}
TOOLS = {
    "analyze": (
        "grokkit.experiments.analyze:analyze_command",
        "run a finished run's probes over its trajectory checkpoints",
    ),
    "export": (
        "grokkit.results.export:export_command",
        "write a trained decoder as a TransformerLens HookedTransformer",
    ),
    "plot": ("grokkit.results.plot:plot_command", "draw a run's accuracy curves as a PNG"),
    "sweep": (
        "grokkit.experiments.sweep:sweep_command",
        "run a grid of `grokkit fit` runs on Ray Tune (resumable)",
    ),
    "compare": (
        "grokkit.results.compare:compare_command",
        "draw curves or a summary field across runs and sweeps",
    ),
    "transfer": (
        "grokkit.experiments.transfer:transfer_command",
        "fine-tune a run's grokked and memorized checkpoints and a control on new facts (He et al.)",
    ),
    "study": (
        "grokkit.experiments.study:study_command",
        "He et al.'s five data regimes x seeds: a sweep, a table, a figure",
    ),
}


def overview() -> str:
    """``grokkit --help``: every subcommand in one line."""
    helps = {**TRAINER_COMMANDS, **{name: help for name, (_, help) in TOOLS.items()}}
    lines = [f"  {name:<10}{help}" for name, help in helps.items()]
    return "\n".join(
        [
            "usage: grokkit [-h] [--version] [--debug] SUBCOMMAND ...",
            "",
            "Grokking and generalization circuits in transformers on two-hop knowledge composition.",
            "",
            "subcommands (`grokkit SUBCOMMAND --help` gives each one's options):",
            *lines,
            "",
            "options:",
            "  -h, --help  show this overview and exit",
            "  --version   show grokkit's version and exit",
            f"  --debug     show tracebacks instead of one-line errors (also {DEBUG_ENV}=1)",
        ]
    )
