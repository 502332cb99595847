"""What ``grokkit validate|test`` print: one row per split, a column per metric. Lightning's own table lists
every metric once per evaluation dataloader (five identical columns, the names cut short); ``--verbose
true`` prints it too."""

from __future__ import annotations

import lightning as L
from rich.console import Console
from rich.table import Table

PREFIX = {"validate": "val", "test": "test"}  # of the metrics each command logs


def scores_table(trainer: L.Trainer, command: str) -> Table:
    """The ``<prefix>/<split>/<metric>`` values of ``command``'s evaluation, at the step it scored."""
    rows: dict[str, dict[str, float]] = {}
    for key, value in trainer.callback_metrics.items():
        prefix, _, rest = key.partition("/")
        split, _, metric = rest.rpartition("/")
        if prefix == PREFIX[command] and split:
            rows.setdefault(split, {})[metric] = float(value)
    metrics = list(dict.fromkeys(metric for row in rows.values() for metric in row))
    table = Table(title=f"grokkit {command}, step {trainer.global_step}", title_justify="left")
    table.add_column("split")
    for metric in metrics:
        table.add_column(metric, justify="right")
    for split, row in rows.items():
        table.add_row(split, *(f"{row[m]:.4f}" if m in row else "" for m in metrics))
    return table


def print_scores(trainer: L.Trainer, command: str) -> None:
    Console().print(scores_table(trainer, command))
