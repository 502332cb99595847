"""The transfer experiment's table (markdown and CSV) and figure, from the results boards of its runs.

Per start: the new-fact accuracy (``new_atomic``), the exact match of every category at the end and its
maximum, and the circuit signal per category: the causal strength of S[mid, r1] (a decoder's signal) where
``CausalTracing`` traced that category, else the logit lens's ``<category>/circuit_signal`` (Bridge Found away
from the position atomic recall trains: the recursive model's), else ``<category>/bridge_found_any``.
The figure has He et al.'s transfer layout: one row per start, one column per category, each panel
new-fact accuracy, exact match and circuit signal against steps.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from grokkit.atomic import atomic_write
from grokkit.errors import ConfigError
from grokkit.train.board import ResultsBoard
from grokkit.train.checkpoint_file import read_checkpoint

STARTS = ("grokked", "memorized", "scratch")
STARTED = "transfer.json"  # in OUT/<start>/, written before the start trains: a directory transfer may empty
FINISHED = "finished.json"  # in OUT/<start>/, written once the start's fit has returned
CATEGORIES = {
    "new_old": "new + old (new fact as hop 1)",
    "old_new": "old + new (as hop 2)",
    "new_new": "new + new",
}
Curves = dict[str, list[tuple[int, float]]]


def curves_of(board: ResultsBoard) -> Curves:
    """Every scalar a run published, as ``{"<section>/<key>": [(step, value), ...]}`` (exact steps)."""
    curves: Curves = {}
    for section, history in board.history.items():
        for step, values in history:
            for key, value in values.items():
                curves.setdefault(f"{section}/{key}", []).append((step, value))
    return curves


def circuit_tag(curves: Curves, category: str, traced: str | None) -> str | None:
    """The tag of ``category``'s circuit signal; ``traced`` is the split ``CausalTracing`` traced, if any."""
    if traced == category and "causal_tracing/r1_mid_strength" in curves:
        return "causal_tracing/r1_mid_strength"
    for key in ("circuit_signal", "bridge_found_any"):
        if f"logit_lens/{category}/{key}" in curves:
            return f"logit_lens/{category}/{key}"
    return None


def first_at_least(points: list[tuple[int, float]], level: float) -> int | None:
    return next((step for step, value in points if value >= level), None)


def summarize(start: str, curves: Curves, traced: str | None, source_step: int | None) -> dict[str, Any]:
    """One row of the table: the numbers of one start's run."""

    def end(tag: str | None) -> float | None:
        return curves[tag][-1][1] if tag in curves else None

    new_facts = curves.get("val/new_atomic/acc", [])
    row: dict[str, Any] = {
        "start": start,
        "source_step": source_step,
        "iid_at_start": curves["val/test_inferred_iid/acc"][0][1]
        if "val/test_inferred_iid/acc" in curves
        else None,
        "iid_end": end("val/test_inferred_iid/acc"),
        "new_fact_end": end("val/new_atomic/acc"),
        "new_fact_0.99_at": first_at_least(new_facts, 0.99),
    }
    for category in CATEGORIES:
        em = [value for _, value in curves.get(f"val/{category}/acc", [])]
        row[f"{category}_em_end"] = em[-1] if em else None
        row[f"{category}_em_max"] = max(em) if em else None
        tag = circuit_tag(curves, category, traced)
        row[f"{category}_circuit_end"] = end(tag)
        row[f"{category}_circuit_key"] = tag.rpartition("/")[2] if tag else None
    return row


def number(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def markdown(rows: list[dict[str, Any]], counts: dict[str, int]) -> str:
    keys = {row[f"{c}_circuit_key"] for row in rows for c in CATEGORIES} - {None}
    header = [
        "start",
        "init step",
        "ID test at start -> end",
        f"new facts (n={counts.get('eval_new_atomic', '?')}): end (>= 0.99 at step)",
        *(f"{title}: EM end / max (n={counts.get(f'eval_{c}', '?')})" for c, title in CATEGORIES.items()),
        f"circuit ({', '.join(sorted(keys)) or '-'}) at end: " + " / ".join(CATEGORIES),
    ]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for row in rows:
        cells = [
            row["start"],
            number(row["source_step"]),
            f"{number(row['iid_at_start'])} -> {number(row['iid_end'])}",
            f"{number(row['new_fact_end'])} ({number(row['new_fact_0.99_at'])})",
            *(f"{number(row[f'{c}_em_end'])} / {number(row[f'{c}_em_max'])}" for c in CATEGORIES),
            " / ".join(number(row[f"{c}_circuit_end"]) for c in CATEGORIES),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(
    curves: dict[str, Curves], traced: dict[str, str | None], counts: dict[str, int], out: Path
) -> None:
    fig = Figure(figsize=(4 * len(CATEGORIES), 2.8 * len(curves)), dpi=110)  # no pyplot: no global state
    axes = fig.subplots(len(curves), len(CATEGORIES), squeeze=False)
    for row_axes, (start, run) in zip(axes, curves.items(), strict=True):
        for ax, (category, title) in zip(row_axes, CATEGORIES.items(), strict=True):
            tag = circuit_tag(run, category, traced[start])
            for label, key, color in (
                ("new-fact accuracy", "val/new_atomic/acc", "tab:green"),
                ("exact match", f"val/{category}/acc", "tab:red"),
                (f"circuit ({tag.rpartition('/')[2]})" if tag else "circuit", tag, "tab:blue"),
            ):
                if key in run:
                    steps, values = zip(*run[key], strict=True)
                    ax.plot(steps, values, label=label, color=color, linewidth=1.6)
            ax.set(ylim=(-0.03, 1.03), title=f"{start}: {title} (n={counts.get(f'eval_{category}', '?')})")
            ax.title.set_fontsize(9)
            ax.grid(alpha=0.3)
        row_axes[0].set_ylabel("rate")
    for ax in axes[-1]:
        ax.set_xlabel("fine-tuning step")
    axes[0][0].legend(fontsize=7, loc="center right")
    fig.tight_layout()
    atomic_write(out, lambda f: fig.savefig(f, format="png"))


def last_checkpoint(out: Path, start: str) -> Path:
    return out / start / "checkpoints" / "last.ckpt"


def finished(out: Path, start: str) -> bool:
    """Whether ``start``'s fit under ``out`` returned: its marker is written only then."""
    return (out / start / FINISHED).is_file()


def unfinished_starts(out: Path) -> list[str]:
    """Starts under ``out`` whose fit began but never returned (killed, or stopped by an error): their
    ``last.ckpt`` is a periodic one from midway, and the report leaves them out."""
    return [s for s in STARTS if last_checkpoint(out, s).is_file() and not finished(out, s)]


def data_record(origin: dict[str, Any]) -> dict[str, Any]:
    """What a start was fine-tuned on, as flat keys: its data parameters (``data.injection.n_new``, ...) and
    evaluation counts."""
    data = dict(origin.get("data") or {})
    record = {f"data.injection.{key}": value for key, value in (data.pop("injection", None) or {}).items()}
    record |= {f"data.{key}": value for key, value in data.items()}
    return record | {key: n for key, n in origin.items() if key.startswith("eval_")}


def refuse_different_data(out: Path, records: dict[str, dict[str, Any]]) -> None:
    """One table compares starts on the same new facts: refuse starts whose data records differ (in the keys
    all of them hold: a start of an older grokkit records its evaluation counts only)."""
    keys = sorted(set.intersection(*(set(record) for record in records.values())))
    differing = [key for key in keys if len({repr(record.get(key)) for record in records.values()}) > 1]
    if differing:
        key = differing[0]
        values = ", ".join(f"{start} {record.get(key)}" for start, record in records.items())
        raise ConfigError(
            f"{out} holds starts fine-tuned on different data ({key}: {values}); rerun every start with one data "
            "setting, or give another --out"
        )


def write_report(out: Path) -> list[dict[str, Any]]:
    """``out/transfer.md``, ``.csv`` and ``.png`` from every finished start under ``out``; returns the table's
    rows."""
    runs = {}
    for start in STARTS:
        path = last_checkpoint(out, start)
        if path.is_file() and finished(out, start):
            runs[start] = ResultsBoard().restore(read_checkpoint(path, str(path)))
    if not runs:
        raise ConfigError(
            f"no finished start under {out} (OUT/<start>/checkpoints/last.ckpt and {FINISHED}): nothing to report"
        )
    curves = {start: curves_of(board) for start, board in runs.items()}
    traced = {start: (board.latest("causal_tracing") or {}).get("split") for start, board in runs.items()}
    origins = {start: board.latest("transfer") or {} for start, board in runs.items()}
    sources = {str(Path(origin["source"]).resolve()) for origin in origins.values() if origin.get("source")}
    if len(sources) > 1:
        raise ConfigError(
            f"{out} holds starts fine-tuned from different runs ({', '.join(sorted(map(str, sources)))}); rerun "
            "every start from one --source, or give another --out"
        )
    refuse_different_data(out, {start: data_record(origin) for start, origin in origins.items()})
    counts = next(iter(origins.values()))
    rows = [summarize(start, curves[start], traced[start], origins[start].get("init_step")) for start in runs]
    atomic_write(out / "transfer.md", lambda f: f.write(markdown(rows, counts).encode()))
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out / "transfer.csv", lambda f: f.write(table.getvalue().encode()))
    figure(curves, traced, counts, out / "transfer.png")
    return rows
