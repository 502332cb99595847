"""Example user probe: how large are the weights? (A template: copy this file to write your own.)

Weight decay shrinks the weights of a memorizing network until a smaller, generalizing solution wins, so
the weight norm usually falls around grokking. Use it in a config, running grokkit from the repository
root (the current directory is on the import path):

    trainer:
      callbacks:
        - class_path: plugins.weight_norm.WeightNorm
          init_args: {every_n_steps: 1000}

TensorBoard then shows ``probe/weight_norm/total`` and one curve per parameter group, and ``summary.json``
holds the latest values under ``weight_norm``. A probe that needs what other probes found does not call
them: it reads the results board, e.g. ``pl_module.board.series("val", "train/acc")`` gives
[(step, accuracy), ...], and sets ``stage = 1`` so it runs after them.
"""

from __future__ import annotations

from collections import defaultdict

import lightning as L

from grokkit.probes import Probe


class WeightNorm(Probe):
    """The L2 norm of all weights of the evaluated network, and of each parameter group.

    Args:
        per_block: One group per block (``blocks.0``, ``blocks.1``, ...) rather than one for all blocks.
    """

    stage = 0  # a measurement: it reads nothing other probes publish

    # Constructor arguments must be typed: grokkit parses the config against this signature. The schedule
    # arguments go to the base class, which decides when the probe runs (here, by default, every validation).
    def __init__(self, per_block: bool = True, every_n_steps: int = 1, per_decade: int | None = None) -> None:
        super().__init__(every_n_steps=every_n_steps, per_decade=per_decade)
        self.per_block = per_block

    def group(self, parameter_name: str) -> str:
        """``blocks.0.attn.qkv.weight`` -> ``blocks.0`` (or ``blocks``); ``wte.weight`` -> ``wte``."""
        parts = parameter_name.split(".")
        return ".".join(parts[:2]) if self.per_block and len(parts) > 2 and parts[1].isdigit() else parts[0]

    # compute() runs after a validation, in eval mode, without gradients, on rank zero only. It returns a
    # flat dict: numbers become TensorBoard scalars probe/weight_norm/<key>, everything goes to summary.json.
    # (Override render(writer, step, result) too to draw figures or text with TensorBoard's SummaryWriter.)
    def compute(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        squares: dict[str, float] = defaultdict(float)
        for name, parameter in pl_module.eval_net.named_parameters():  # the EMA weights when there are any
            squares[self.group(name)] += parameter.detach().float().square().sum().item()
        return {"total": sum(squares.values()) ** 0.5, **{group: s**0.5 for group, s in squares.items()}}
