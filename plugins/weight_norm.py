"""Example user probe: how large are the weights, and the states they compute? (A template to copy.)

Weight decay shrinks the weights of a memorizing network until a smaller, generalizing solution wins, so
the weight norm usually falls around grokking; the residual stream at the answer position shrinks with it.
Use it in a config, running grokkit from the repository root (the current directory is on the import path):

    trainer:
      callbacks+:
        - class_path: plugins.weight_norm.WeightNorm
          init_args: {every_n_steps: 1000}

TensorBoard then shows ``probe/weight_norm/total``, one curve per parameter group and one per stage
(``state_norm/stageS``); ``summary.json`` holds the latest values under ``weight_norm``. A probe that needs
what other probes found does not call them: it reads the results board, e.g.
``ResultsBoard.of(trainer).series("val", "train/acc")`` gives [(step, accuracy), ...], and sets
``stage = 1`` so it runs after them.
"""

from __future__ import annotations

from collections import defaultdict

import lightning as L
import torch

from grokkit.probes import Probe
from grokkit.ranges import SCORED


class WeightNorm(Probe):
    """The L2 norm of the evaluated network's weights (all, and per parameter group), and the mean L2 norm of
    its residual state at the answer position, per stage, on a fixed sample of queries.

    Args:
        per_block: One group per block (``blocks.0``, ``blocks.1``, ...) rather than one for all blocks.
        split: The evaluation split whose queries are run for the state norms.
        every_n_steps: See :class:`~grokkit.probes.Probe`.
        per_decade: See :class:`~grokkit.probes.Probe`.
        sample_size: Queries run for the state norms.
    """

    stage = 0  # a measurement: it reads nothing other probes publish
    # What an argument may hold, checked on the parsed config before anything is built (a bad value is refused
    # in one line): a Choice of names, or a Range(low, high) for a number (grokkit.allowed).
    argument_ranges = {"split": SCORED}  # the splits a validation scores, a transfer run's injected ones too

    # Constructor arguments must be typed: grokkit parses the config against this signature. The schedule and
    # sample arguments go to the base class, which decides when the probe runs (by default, every validation).
    def __init__(
        self,
        per_block: bool = True,
        split: str = "test_inferred_iid",
        every_n_steps: int = 1,
        per_decade: int | None = None,
        sample_size: int = 300,
    ) -> None:
        super().__init__(every_n_steps=every_n_steps, per_decade=per_decade, sample_size=sample_size)
        self.per_block, self.split = per_block, split

    def group(self, parameter_name: str) -> str:
        """``blocks.0.attn.qkv.weight`` -> ``blocks.0`` (or ``blocks``); ``wte.weight`` -> ``wte``."""
        parts = parameter_name.split(".")
        return ".".join(parts[:2]) if self.per_block and len(parts) > 2 and parts[1].isdigit() else parts[0]

    # compute() runs after a validation, in eval mode, without gradients, on rank zero only. It returns a
    # flat dict: numbers become TensorBoard scalars probe/weight_norm/<key>, everything goes to summary.json.
    # (Override render(writer, step, result) too to draw figures or text with TensorBoard's SummaryWriter.)
    def compute(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        model = pl_module.eval_net  # the EMA weights when there are any; a decoder or a recursive model
        squares: dict[str, float] = defaultdict(float)
        for name, parameter in model.named_parameters():
            squares[self.group(name)] += parameter.detach().float().square().sum().item()
        result = {"total": sum(squares.values()) ** 0.5, **{group: s**0.5 for group, s in squares.items()}}

        # The data path: the same queries every time, in the model's own input layout, on its device.
        device = next(model.parameters()).device
        (items,) = self.sample(trainer.datamodule.split_items(self.split).to(device))  # (N, 5) h r1 r2 t </a>
        inputs, _ = model.inputs_and_targets(items)
        _, states = model(inputs, return_states=True)  # (n_stages, N, T, d_model)
        rows = torch.arange(len(items), device=device)
        at_answer = states[:, rows, model.answer_position(items)]  # (n_stages, N, d_model)
        norms = at_answer.float().norm(dim=-1).mean(dim=1).tolist()  # one host transfer
        return result | {f"state_norm/stage{stage}": norm for stage, norm in enumerate(norms)}
