"""The PyTorch adapter's occlusion policy: which engine computes the boxed images' scores.

Exact incremental occlusion (``torch_incremental``) by default, batched full inference where it
cannot trace the model or does not pay (small images on a GPU), reduced precision under autocast
when asked. ``TorchAdapter.box_scorers`` calls ``box_scorers`` here.
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator

import torch

from vexplain.core.adapter import BoxScorer, ModelAdapter, Scorer
from vexplain.core.concurrency import no_model_running
from vexplain.core.perturbation import batched_box_scorers

from .torch_eval import eval_mode
from .torch_incremental import GPU_MIN_PIXELS, NotIncremental, incremental_box_scorers, incremental_pays
from .torch_precision import precision_error, reduced_precision, true_float32

if TYPE_CHECKING:
    from .torch import TorchAdapter


def box_scorers(
adapter: "TorchAdapter", images: torch.Tensor, window: tuple[int, int], baseline: float, engine: str = "auto", field_limit: float | None = None,
    precision: str = "fp32",
) -> list[BoxScorer]:
    """Occlusion's box scorers for the PyTorch ``adapter``. ``auto`` and ``incremental``: exact incremental occlusion (``torch_incremental``), which
    recomputes only what each box changes, after one batched clean forward of ``images``; a model
    it cannot trace falls back to batched full inference (``auto`` engine) and says why in the
    notes. ``auto`` on a GPU runs small images by batched full inference (``incremental_pays``)
    unless ``field_limit`` asks for the incremental engine. ``torch``/``onnx``: batched full
    inference. ``precision`` "bf16"/"fp16" runs the torch engines under autocast (approximate)
    and notes the largest change it makes to the unoccluded scores, against true float32 (TF32
    off), as ``precision_error``."""
    adapter.check_engine("occlusion", engine)
    if precision != "fp32" and engine == "onnx":
        raise adapter._unsupported(f"precision '{precision}' with engine 'onnx'", "reduced precision runs in torch; use engine 'auto', 'incremental' or 'torch'")
    if engine == "auto" and field_limit is None and not incremental_pays(adapter.device, tuple(images.shape[2:])):
        engine = "torch"
        reason = f"on {adapter.device.type}, images under {GPU_MIN_PIXELS} pixels run faster by batched full inference"
    else:
        reason = None
    scorers = _engine_box_scorers(adapter, images, window, baseline, engine, field_limit, precision)
    if reason:
        for scorer in scorers:
            scorer.notes["engine_reason"] = reason
    if precision == "fp32":
        return scorers
    with no_model_running(), true_float32():  # the TF32 flags are process-wide
        exact = adapter.forward(images)
    error = precision_error(exact, torch.stack([scorer.base for scorer in scorers]))
    for scorer in scorers:
        scorer.notes.update(precision=precision, precision_error=error)
    return scorers

def _engine_box_scorers(
adapter: "TorchAdapter", images: torch.Tensor, window: tuple[int, int], baseline: float, engine: str, field_limit: float | None,
    precision: str = "fp32",
) -> list[BoxScorer]:
    def full_inference(engine: str) -> list[BoxScorer]:
        if precision == "fp32":
            return ModelAdapter.box_scorers(adapter, images, window, baseline, engine, field_limit)
        scorer = Scorer(lambda batch: _forward_in(adapter, precision, batch), "torch", {"engine_reason": "reduced precision runs in torch"})
        return batched_box_scorers(scorer, images.to(adapter.device), window, baseline, field_limit)

    if engine in ("torch", "onnx"):
        return full_inference(engine)

    @contextlib.contextmanager
    def context() -> Iterator[None]:
        with eval_mode(adapter.model), reduced_precision(adapter.device, precision):
            yield

    try:
        if isinstance(adapter.model, torch.jit.ScriptModule):
            raise NotIncremental("TorchScript modules cannot be traced")
        if adapter.dtype != torch.float32:
            raise NotIncremental(f"the model's parameters are {adapter.dtype}; the incremental engine runs float32 models")
        with context():
            try:
                return incremental_box_scorers(adapter.model, images.to(adapter.device), window, baseline, adapter._output_scores, context, field_limit)
            except RuntimeError as error:
                adapter._raise_for_inputs(images, error)
                raise
    except NotIncremental as reason:
        fallbacks = full_inference("auto")
        for fallback in fallbacks:
            fallback.notes["engine_fallback"] = f"incremental occlusion not possible: {reason}"
        return fallbacks


def _forward_in(adapter: "TorchAdapter", precision: str, batch: torch.Tensor) -> torch.Tensor:
    with reduced_precision(adapter.device, precision):
        return adapter.forward(batch, batch.shape[0])
