"""The ``attention`` capability of the PyTorch adapter: each attention module's probabilities,
recomputed from its inputs (``torch_attention``), and d(target)/d(them), batch by batch in eval
mode. A mixin of ``TorchAdapter``: it uses the adapter's ``model``, ``device``, ``capabilities``,
``_batches``, ``_call``, ``_scores`` and ``_unsupported``."""
from __future__ import annotations

import copy
from typing import Callable

import torch

from vexplain.core.adapter import ATTENTION, AttentionResult
from vexplain.core.targets import TargetRequest, differentiable, gather_scores

from .torch_attention import capture_attentions
from .torch_eval import eval_mode


class TorchAttentionCapture:
    """``attentions`` and ``attention_gradients`` of ``self.model``."""

    def attentions(self, inputs: torch.Tensor) -> AttentionResult:
        """Recomputed from each attention module's inputs (``torch_attention``), batch by batch."""
        refuse = self._attention_refusal()
        inputs, parts, scores = inputs.to(self.device), [], []
        with eval_mode(self.model), torch.no_grad():
            for part in self._batches(len(inputs)):
                names, probabilities, output = capture_attentions(self.model, lambda: self._call(inputs[part]), refuse)
                scores.append(self._scores(output))
                parts.append(probabilities)
        return AttentionResult(_stacked(parts), names, torch.cat(scores))

    def attention_gradients(self, inputs: torch.Tensor, targets: TargetRequest) -> AttentionResult:
        """The probabilities made part of the graph (``torch_attention``) and d(target)/d(them)."""
        refuse = self._attention_refusal()
        inputs, parts, grads, scores, chosen = inputs.to(self.device), [], [], [], []
        with eval_mode(self.model), torch.enable_grad():
            for part in self._batches(len(inputs)):
                names, probabilities, output = capture_attentions(self.model, lambda: self._call(inputs[part]), refuse, gradients=True)
                batch_scores = self._scores(output)
                batch_targets = targets.select(batch_scores.detach(), part.start)
                score = differentiable(gather_scores(batch_scores, batch_targets)).sum()
                found = torch.autograd.grad(score, probabilities, allow_unused=True)
                grads.append([torch.zeros_like(p) if g is None else g for p, g in zip(probabilities, found)])
                parts.append([p.detach() for p in probabilities])
                scores.append(batch_scores.detach())
                chosen.append(batch_targets)
        return AttentionResult(_stacked(parts), names, torch.cat(scores), _stacked(grads), torch.cat(chosen))

    def _attention_refusal(self) -> Callable[[str], Exception]:
        """The ``UnsupportedCapability`` maker for attention capture, listing only the methods that
        work without attention; refuses at once when the model takes no hooks (TorchScript)."""
        if ATTENTION not in self.capabilities:
            raise self._unsupported(ATTENTION, "TorchScript modules take no hooks")
        without = copy.copy(self)
        without.capabilities = self.capabilities - {ATTENTION}
        return lambda hint: without._unsupported(ATTENTION, hint)


def _stacked(batches: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """Per-layer tensors of several batches joined along the batch axis."""
    return [torch.cat(layer) for layer in zip(*batches)]
