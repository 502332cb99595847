"""Where probes publish: the latest result of every probe, its history, and ``summary.json``.

Probes never call each other; a detector reads what others published here. The board lives on the
LightningModule so it travels in checkpoints, and it rewrites ``summary.json`` atomically on every publish.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grokkit.atomic import atomic_write
from grokkit.errors import StorageError


class ResultsBoard:
    """``sections[name]`` holds a probe's latest result; ``history[name]`` its scalar results by step."""

    def __init__(self) -> None:
        self.sections: dict[str, dict[str, Any]] = {}
        self.history: dict[str, list[tuple[int, dict[str, float]]]] = {}
        self.path: Path | None = None

    def publish(self, name: str, step: int, result: dict[str, Any]) -> None:
        self.sections[name] = {"step": step, **result}
        scalars = {
            k: float(v) for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        history = self.history.setdefault(name, [])
        if history and history[-1][0] == step:
            history[-1] = (step, scalars)
        else:
            history.append((step, scalars))
        self.write()

    def latest(self, name: str) -> dict[str, Any] | None:
        return self.sections.get(name)

    def series(self, name: str, key: str) -> list[tuple[int, float]]:
        """(step, value) pairs of one scalar of one probe, in publishing order."""
        return [(step, values[key]) for step, values in self.history.get(name, []) if key in values]

    def summary(self) -> dict[str, Any]:
        return dict(self.sections)

    def write(self) -> None:
        """Atomic rewrite of summary.json: readers, and a run resumed after a crash, see old or new, never half."""
        if self.path is None:
            return
        text = json.dumps(self.summary(), indent=1, default=float)
        try:
            atomic_write(self.path, lambda f: f.write(text.encode()))
        except OSError as error:  # a full disk: stop in one line, the previous summary.json is intact
            raise StorageError(
                f"cannot write {self.path} ({error.strerror or error}); the previous one is intact; free disk "
                "space, then resume with --ckpt_path last"
            ) from error

    def state_dict(self) -> dict[str, Any]:
        return {"sections": self.sections, "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sections, self.history = state["sections"], state["history"]
