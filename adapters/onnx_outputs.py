"""Which outputs of an ONNX graph are read, and how they become scores.

``output=`` (an output name or index) chooses the explained graph output. A graph with one output
needs no choice; a graph with several and no choice refuses class-index targets (the error lists
every output with its shape) and gives callable targets all of them.

``scores=`` says what class-index targets are scored on. ``"logits"`` (the default): when the
explained output is computed by a ``Softmax`` or ``Sigmoid`` node, its *input* is read instead.
A saturated probability hardly moves when the evidence for its class is removed (a class at
0.9999 loses 2e-4 where its logit loses 2), so occlusion drops, RISE and Score-CAM weights and
gradients all vanish on probabilities. ``"output"`` keeps the graph's output as it is.

Callable targets always receive graph outputs as ONNX Runtime computed them, as CPU torch
tensors: the chosen output (or the only one) as a tensor, else ``{output name: tensor}`` for all.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from vexplain.core.errors import InvalidOption, ModelLoadError
from vexplain.core.targets import ScoreFunction, apply_score_function

#: nodes whose input, not output, class targets are scored on by default
SQUASHING_OPS = ("Softmax", "Sigmoid")
SCORES_MODES = ("logits", "output")


@dataclass(frozen=True)
class OutputChoice:
    """The graph outputs ``(name, shape)``, the chosen one, and the tensor class scores come from."""

    outputs: tuple[tuple[str, tuple], ...]
    chosen: str | None
    scores_tensor: str | None
    skipped: str | None
    mode: str

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.outputs]

    def class_score_names(self, who: str) -> list[str]:
        """The one tensor class-index scores are read from; several outputs and no choice raise."""
        if self.scores_tensor is None:
            raise InvalidOption(
                f"{who} has {len(self.outputs)} outputs ({listing(self.outputs)}) and class-index targets need one: "
                f"choose it with vx.adapt(model, output=NAME_OR_INDEX) (CLI --output NAME), or give targets= a callable that scores the outputs"
            )
        return [self.scores_tensor]

    def callable_names(self) -> list[str]:
        """What a callable target receives: the chosen (or only) output, else every output."""
        return [self.chosen] if self.chosen is not None else self.names

    def notes(self) -> dict[str, Any]:
        """For ``exp.options``: ``output`` (when chosen), ``scores`` and, when a node was skipped, ``scores_from``."""
        notes: dict[str, Any] = {}
        if self.chosen is not None:
            notes["output"] = self.chosen
        notes["scores"] = "logits" if self.skipped else "output"
        if self.skipped:
            notes["scores_from"] = f"input of {self.skipped} ('{self.scores_tensor}')"
        return notes


def listing(outputs: Sequence[tuple[str, tuple]]) -> str:
    """``"0 'boxes' (batch, 4), 1 'scores' (batch, 2)"``."""
    return ", ".join(f"{i} '{name}' ({', '.join(map(str, shape))})" for i, (name, shape) in enumerate(outputs))


def choose_output(model: Any, outputs: Sequence[tuple[str, tuple]], output: str | int | None, scores: str, who: str) -> OutputChoice:
    """Resolve ``output=`` and ``scores=`` against the graph (``model`` may be None: no skipping)."""
    outputs = tuple((name, tuple(shape)) for name, shape in outputs)
    if scores not in SCORES_MODES:
        raise InvalidOption(f"scores must be 'logits' (skip a final Softmax/Sigmoid, the default) or 'output' (the graph's output as is); got {scores!r}")
    chosen = _resolve(outputs, output, who)
    explained = chosen if chosen is not None else (outputs[0][0] if len(outputs) == 1 else None)
    scores_tensor, skipped = explained, None
    if explained is not None and scores == "logits" and model is not None:
        producer = next((node for node in model.graph.node if explained in node.output), None)
        if producer is not None and producer.op_type in SQUASHING_OPS and producer.input and producer.input[0]:
            scores_tensor, skipped = producer.input[0], f"{producer.op_type} node '{producer.name or explained}'"
    return OutputChoice(outputs, chosen, scores_tensor, skipped, scores)


def _resolve(outputs: tuple[tuple[str, tuple], ...], output: str | int | None, who: str) -> str | None:
    if output is None:
        return None
    names = [name for name, _ in outputs]
    if isinstance(output, bool) or not isinstance(output, (int, str)):
        raise InvalidOption(f"output must be an output name or index of {who} ({listing(outputs)}); got {type(output).__name__}")
    if isinstance(output, str) and output not in names and output.lstrip("-").isdigit():
        output = int(output)  # "--output 1" on the command line: an index unless an output has that name
    if isinstance(output, int):
        if not -len(names) <= output < len(names):
            raise InvalidOption(f"output {output} is out of range: {who} has {len(names)} outputs ({listing(outputs)})")
        return names[output]
    if output not in names:
        raise InvalidOption(f"{who} has no output '{output}'; its outputs: {listing(outputs)}")
    return output


def class_scores(tensor: torch.Tensor, name: str, who: str) -> torch.Tensor:
    """``tensor`` checked as class scores ``(N, K)``."""
    if tensor.dim() != 2:
        raise ModelLoadError(
            f"{who} gives '{name}' of shape {tuple(tensor.shape)}; class-index targets need scores of shape (N, K): "
            "give targets= a callable that scores this output, or choose another with output="
        )
    return tensor


def scored(function: ScoreFunction, names: list[str], tensors: list[torch.Tensor], single: bool, rows: int) -> torch.Tensor:
    """``function`` applied to the fetched outputs (one tensor when ``single``, else a dict by name), as ``(rows, 1)``."""
    structure: Any = tensors[0] if single else dict(zip(names, tensors))
    return apply_score_function(function, structure, rows)
