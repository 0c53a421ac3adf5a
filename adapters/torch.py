"""PyTorch adapter: autograd gradients, forward hooks for activations, for CAM the Linear that
computes the explained output; ``output=`` chooses among structured outputs (``torch_outputs``).

The model stays on its device. During each call every module is put in eval mode and its
previous training flag is restored afterwards; hooks are removed in ``finally``; gradients are
taken with ``torch.autograd.grad`` so no parameter's ``.grad`` is touched.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterator

import torch

from vexplain.core.adapter import (
    ACTIVATION_GRADIENTS,
    ACTIVATION_REPLACEMENT,
    ACTIVATIONS,
    ACTIVATION_HESSIAN,
    ATTENTION,
    BIAS_GRADIENTS,
    CLASSIFIER_WEIGHTS,
    FORWARD,
    GRADIENTS,
    GUIDED_GRADIENTS,
    RULE_GRADIENTS,
    ActivationResult,
    BiasGradientResult,
    BoxScorer,
    GradientResult,
    ModelAdapter,
    Scorer,
)
from vexplain.core.concurrency import running_model
from vexplain.core.errors import InvalidInput, InvalidTarget, ModelLoadError
from vexplain.core.hookspecs import hookimpl
from vexplain.core.notices import warn
from vexplain.core.options import checked, integer
from vexplain.core.targets import ScoreFunction, TargetRequest, apply_score_function, differentiable, gather_scores

from .torch_attention import has_attention
from .torch_attention_capture import TorchAttentionCapture
from .torch_layer_discovery import TorchLayerDiscovery
from .torch_outputs import on_output, producing_linear, select_output
from .torch_errors import call_error, parameter_dtype
from . import torch_occlusion
from .torch_eval import eval_mode
from .torch_loading import build_from_factory, is_factory_spec, load_model_file


class _Capture:
    """A forward hook keeping a module's last output.

    With ``for_grad`` the captured tensor is a detached copy made a leaf that requires grad, and
    the forward continues from a clone of it: d(score)/d(output) then exists even when nothing
    before the layer requires grad (a frozen backbone, ``features.requires_grad_(False)``), no
    parameter's flag is touched, and later in-place ops (``ReLU(inplace=True)``) cannot alter the
    captured tensor. A non-float output cannot carry gradients and is kept as it is.
    """

    def __init__(self, for_grad: bool):
        self.for_grad = for_grad
        self.output: torch.Tensor | None = None

    def __call__(self, module: torch.nn.Module, args: Any, output: Any) -> Any:
        if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):  # a Hugging Face block's (hidden, ...)
            replaced = self(module, args, output[0])
            return None if replaced is None else (replaced, *output[1:])
        if not isinstance(output, torch.Tensor):
            return None
        if self.for_grad and output.is_floating_point():
            self.output = output.detach().clone().requires_grad_(True)
            return self.output.clone()
        self.output = output.detach().clone()
        return None


class TorchAdapter(TorchLayerDiscovery, TorchAttentionCapture, ModelAdapter):
    """An ``nn.Module`` (TorchScript included), kept on its device.

    ``batch_size`` (default 64) bounds each forward/backward. ``output`` (an index or name)
    chooses the explained entry of a model returning a tuple, dict or object (``torch_outputs``:
    a ``.logits`` is taken unasked; several entries and no choice refuse class-index targets).
    TorchScript modules support ``forward`` and ``gradients`` only, since hooks cannot be added
    to compiled modules.
    """

    backend = "torch"
    capabilities = frozenset({FORWARD, GRADIENTS, ACTIVATIONS, ACTIVATION_GRADIENTS, CLASSIFIER_WEIGHTS, ACTIVATION_REPLACEMENT, GUIDED_GRADIENTS, RULE_GRADIENTS, ATTENTION,
                              BIAS_GRADIENTS, ACTIVATION_HESSIAN})
    #: set by ``with_score_function`` (callable targets): scores are then ``function(output)`` as (N, 1)
    _score_function: ScoreFunction | None = None

    def __init__(self, model: torch.nn.Module, batch_size: int = 64, name: str | None = None, metadata: dict | None = None, output: str | int | None = None):
        super().__init__()
        self.model = model
        self.output = output
        #: the name of the entry last explained (``output`` or an unasked ``logits``), for ``exp.options``
        self._explained_name: str | None = None
        self.batch_size = checked("adapter 'torch'", "batch_size", batch_size, integer(1))
        self.name = name or type(model).__name__
        self.metadata = dict(metadata or {})
        self.replacement_modes: dict[str, str] = {}
        if isinstance(model, torch.jit.ScriptModule):
            self.capabilities = frozenset({FORWARD, GRADIENTS})
        elif not has_attention(model):
            self.capabilities = self.capabilities - {ATTENTION}

    @property
    def device(self) -> torch.device:
        for tensor in self.model.parameters():
            return tensor.device
        for tensor in self.model.buffers():
            return tensor.device
        return torch.device("cpu")

    @property
    def exclusive_keys(self) -> tuple[torch.nn.Module, ...]:
        """Every module of the model: calls on one model, through any adapter, and on models that
        share a submodule (a backbone under two heads) run one at a time."""
        return tuple(self.model.modules())

    @property
    def dtype(self) -> torch.dtype:
        """The model's parameter dtype: inputs are cast to it for each call, scores and
        activations come back as float32."""
        return parameter_dtype(self.model)

    def describe(self) -> str:
        kind = "TorchScript" if isinstance(self.model, torch.jit.ScriptModule) else "PyTorch"
        return f"{kind} model '{self.name}'"

    def _batches(self, count: int, batch_size: int | None = None) -> Iterator[slice]:
        step = max(1, int(batch_size or self.batch_size))
        for start in range(0, count, step):
            yield slice(start, min(start + step, count))

    def forward(self, inputs: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        inputs = inputs.to(self.device)
        with eval_mode(self.model), torch.no_grad():
            return torch.cat([self._scores(self._call(inputs[part])) for part in self._batches(len(inputs), batch_size)])

    def _call(self, batch: torch.Tensor) -> Any:
        """The model on ``batch``; a failure on inputs whose channel count differs from the first
        convolution's becomes ``InvalidInput`` (checked only after a failure, so a model that
        adapts its input itself is never refused). Holds the shared model-run lock, so no fx
        trace or ONNX export in another thread overlaps it (``core/concurrency.py``)."""
        dtype = self.dtype
        if dtype in (torch.float16, torch.bfloat16):
            digits = 2 if dtype == torch.bfloat16 else 3
            warn(f"the model's parameters are {dtype}: inputs are cast to it, so scores and maps carry its rounding (about {digits} significant digits)")
        try:
            with running_model():
                output = self.model(batch.to(dtype))
                return output if self._score_function is None else apply_score_function(self._score_function, output, len(batch))
        except RuntimeError as error:
            self._raise_for_inputs(batch, error)
            raise

    def _raise_for_inputs(self, batch: torch.Tensor, error: RuntimeError) -> None:
        """After the model failed on ``batch``: ``InvalidInput`` when the inputs do not fit it
        (channels, a size below its receptive field or not its classifier's); otherwise nothing."""
        self._raise_if_wrong_channels(batch, error)
        typed = call_error(self.describe(), batch, error)
        if typed is not None:
            raise typed from error

    def _raise_if_wrong_channels(self, batch: torch.Tensor, error: RuntimeError) -> None:
        """After the model failed on ``batch``: ``InvalidInput`` when its channel count differs from
        the first convolution's (the likely cause); otherwise nothing."""
        expected = self._first_conv_channels()
        if expected is None or batch.dim() != 4 or batch.shape[1] == expected:
            return
        raise InvalidInput(
            f"inputs have {batch.shape[1]} channels but {self.describe()} takes {expected} (its first convolution); "
            f"shape must be (N, {expected}, H, W), got (N, {', '.join(map(str, batch.shape[1:]))})"
        ) from error

    def _first_conv_channels(self) -> int | None:
        for module in self.model.modules():
            if isinstance(module, torch.nn.Conv2d) or getattr(module, "original_name", None) == "Conv2d":
                channels = getattr(module, "in_channels", None)
                return int(channels) if isinstance(channels, int) else None
        return None

    def _scores(self, output: Any) -> torch.Tensor:
        if self._score_function is None:  # a bound callable already chose (``with_score_function``)
            output, name = select_output(output, self.output, self.describe())
            self._explained_name = name if name is not None else self._explained_name
        if not isinstance(output, torch.Tensor) or output.dim() != 2:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise ModelLoadError(f"{self.describe()} returned {shape}; vexplain needs scores of shape (N, K), or targets= a callable scoring the output")
        return output.float()

    def engines(self, purpose: str) -> tuple[str, ...]:
        """Every engine of ``core.engine_choice.ENGINES[purpose]``: torch, ONNX Runtime (an export) and, for occlusion, incremental."""
        from vexplain.core.engine_choice import ENGINES

        return ENGINES[purpose]

    def engine_key(self) -> str:
        """The architecture (``engine_choice.structure_key``), the explained output and whether a callable target is bound."""
        from vexplain.core.engine_choice import structure_key

        return f"torch:{structure_key(self.model)}:output={self.output}:callable={self._score_function is not None}"

    def scorer(self, engine: str = "auto", sample: torch.Tensor | None = None) -> Scorer:
        """``auto``: ONNX Runtime for a CPU model (exported once, cached), torch on any other device."""
        self.check_engine("forward", engine)
        if self._score_function is not None:  # an arbitrary Python callable cannot be exported
            if engine == "onnx":
                raise self._unsupported("engine 'onnx'", "callable targets run in torch; use engine 'auto' or 'torch'")
            return Scorer(lambda batch: self.forward(batch, batch.shape[0]), "torch", {"engine_reason": "callable targets run in torch"})
        dtype = self.dtype
        if dtype != torch.float32:  # the export traces float32 inputs
            if engine == "onnx":
                raise self._unsupported("engine 'onnx'", f"the model's parameters are {dtype}; ONNX export takes float32 models")
            return Scorer(lambda batch: self.forward(batch, batch.shape[0]), "torch", {"engine_reason": f"{dtype} models run in torch"})
        wants_onnx = engine == "onnx" or (engine == "auto" and self.device.type == "cpu")
        if wants_onnx and sample is not None and not self._returns_tensor(sample):
            if engine == "onnx":
                raise self._unsupported("engine 'onnx'", "the model returns several outputs, which run in torch; use engine 'auto' or 'torch'")
            return Scorer(lambda batch: self.forward(batch, batch.shape[0]), "torch", {"engine_reason": "a model returning several outputs runs in torch"})
        if wants_onnx and sample is not None and not isinstance(self.model, torch.jit.ScriptModule):
            from .onnx_export import cached_export
            from .onnx import OnnxAdapter

            try:
                with eval_mode(self.model):
                    runner, cached = cached_export(
                        self.model, tuple(sample.shape[1:]), lambda data: OnnxAdapter(data, name=f"{self.name} (exported)")
                    )
            except Exception as error:  # exporters fail in many ways on unusual models
                if engine == "onnx":
                    raise ModelLoadError(f"cannot export {self.describe()} to ONNX: {str(error).splitlines()[0]}") from None
                return Scorer(lambda batch: self.forward(batch, batch.shape[0]), "torch", {"engine_fallback": f"ONNX export failed: {str(error).splitlines()[0]}"})
            return Scorer(lambda batch: runner.forward(batch, batch.shape[0]).to(self.device), "onnx", {"export_cached": cached})
        if engine == "onnx":
            raise self._unsupported("engine 'onnx'", "TorchScript models are run by torch")
        return Scorer(lambda batch: self.forward(batch, batch.shape[0]), "torch")

    def box_scorers(
        self, images: torch.Tensor, window: tuple[int, int], baseline: float, engine: str = "auto", field_limit: float | None = None,
        precision: str = "fp32",
    ) -> list[BoxScorer]:
        """Occlusion's engines for a PyTorch model: see ``torch_occlusion.box_scorers``."""
        return torch_occlusion.box_scorers(self, images, window, baseline, engine, field_limit, precision)

    def _returns_tensor(self, sample: torch.Tensor) -> bool:
        """Whether the model's output is a plain tensor (an export then computes exactly the scores)."""
        with eval_mode(self.model), torch.no_grad():
            return isinstance(self._call(sample[:1].to(self.device)), torch.Tensor)

    def output_notes(self) -> dict[str, Any]:
        return {} if self._explained_name is None else {"output": self._explained_name}

    def _output_scores(self, output: Any, count: int) -> torch.Tensor:
        return self._scores(output if self._score_function is None else apply_score_function(self._score_function, output, count))

    def gradients(self, inputs: torch.Tensor, targets: TargetRequest, batch_size: int | None = None) -> GradientResult:
        inputs = inputs.to(self.device)
        grads, scores, chosen = [], [], []
        with eval_mode(self.model), torch.enable_grad():
            for part in self._batches(len(inputs), batch_size):
                batch = inputs[part].detach().clone().requires_grad_(True)
                batch_scores = self._scores(self._call(batch))
                batch_targets = targets.select(batch_scores.detach(), part.start)
                (grad,) = torch.autograd.grad(differentiable(gather_scores(batch_scores, batch_targets)).sum(), batch)
                grads.append(grad)
                scores.append(batch_scores.detach())
                chosen.append(batch_targets)
        return GradientResult(torch.cat(grads), torch.cat(scores), torch.cat(chosen))

    def guided_gradients(self, inputs: torch.Tensor, targets: TargetRequest, batch_size: int | None = None) -> GradientResult:
        if GUIDED_GRADIENTS not in self.capabilities:
            raise self._unsupported(GUIDED_GRADIENTS, "TorchScript code cannot be guided")
        from .torch_guided import guided_relu

        with guided_relu(self.model):
            return self.gradients(inputs, targets, batch_size)

    def rule_gradients(
        self, inputs: torch.Tensor, targets: TargetRequest, rule: str, references: torch.Tensor | None = None, batch_size: int | None = None
    ) -> GradientResult:
        """Backward rules by a function mode around the call (``torch_rules``); no hooks."""
        if RULE_GRADIENTS not in self.capabilities:
            raise self._unsupported(RULE_GRADIENTS, "TorchScript code takes no backward rules")
        from .torch_rules import rule_gradients

        inputs = inputs.to(self.device)
        references = None if references is None else references.to(self.device)
        with eval_mode(self.model):
            return rule_gradients(
                self.model, lambda batch: self._scores(self._call(batch)), inputs, targets, rule, references, self._batches(len(inputs), batch_size)
            )

    def bias_gradients(self, inputs: torch.Tensor, targets: TargetRequest, batch_size: int | None = None) -> BiasGradientResult:
        """Forward hooks on every bias module (``torch_bias_gradients``), one backward pass per batch."""
        if BIAS_GRADIENTS not in self.capabilities:
            raise self._unsupported(BIAS_GRADIENTS, "TorchScript modules take no hooks")
        from .torch_bias_gradients import bias_gradients

        inputs = inputs.to(self.device)
        with eval_mode(self.model):
            return bias_gradients(self.model, lambda batch: self._scores(self._call(batch)), inputs, targets, self._batches(len(inputs), batch_size))

    def activation_hessian(self, inputs: torch.Tensor, layer: str, targets: TargetRequest) -> ActivationResult:
        """``activation_gradients`` with a double backward pass for H·A (``torch_hessian``)."""
        if ACTIVATION_HESSIAN not in self.capabilities:
            raise self._unsupported(ACTIVATION_HESSIAN, "TorchScript modules take no hooks")
        from .torch_hessian import activation_hessian

        return activation_hessian(self, inputs.to(self.device), layer, targets)

    def with_score_function(self, function: ScoreFunction) -> "TorchAdapter":
        bound = copy.copy(self)
        bound._score_function = function if self.output is None else on_output(function, self.output, self.describe())
        bound._explained_name = None if self.output is None else str(self.output)
        return bound

    def _module(self, layer: str) -> torch.nn.Module:
        self.check_layer(layer)
        return self.model.get_submodule(layer)

    def activations(self, inputs: torch.Tensor, layer: str) -> ActivationResult:
        if ACTIVATIONS not in self.capabilities:
            raise self._unsupported(ACTIVATIONS, "TorchScript modules take no hooks")
        inputs = inputs.to(self.device)
        module = self._module(layer)
        acts, scores = [], []
        capture = _Capture(for_grad=False)
        handle = module.register_forward_hook(capture)
        try:
            with eval_mode(self.model), torch.no_grad():
                for part in self._batches(len(inputs)):
                    capture.output = None
                    scores.append(self._scores(self._call(inputs[part])))
                    acts.append(self._captured(capture, layer))
        finally:
            handle.remove()
        return ActivationResult(torch.cat(acts), torch.cat(scores))

    def activation_gradients(self, inputs: torch.Tensor, layer: str, targets: TargetRequest) -> ActivationResult:
        if ACTIVATION_GRADIENTS not in self.capabilities:
            raise self._unsupported(ACTIVATION_GRADIENTS, "TorchScript modules take no hooks")
        inputs = inputs.to(self.device)
        module = self._module(layer)
        acts, grads, scores, chosen = [], [], [], []
        capture = _Capture(for_grad=True)
        handle = module.register_forward_hook(capture)
        try:
            with eval_mode(self.model), torch.enable_grad():
                for part in self._batches(len(inputs)):
                    capture.output = None
                    batch_scores = self._scores(self._call(inputs[part]))
                    activation = self._captured(capture, layer)
                    batch_targets = targets.select(batch_scores.detach(), part.start)
                    if not activation.requires_grad:
                        raise ModelLoadError(f"layer '{layer}' outputs {activation.dtype} values, which carry no gradients; pick a layer with a float output")
                    target_scores = gather_scores(batch_scores, batch_targets)
                    if self._score_function is not None:
                        differentiable(target_scores)
                    grad = None
                    if target_scores.requires_grad:  # not when no path joins the layer to a frozen model's score
                        (grad,) = torch.autograd.grad(target_scores.sum(), activation, allow_unused=True)
                    if grad is None:
                        raise InvalidTarget(f"the explained score does not depend on layer '{layer}' (no path from the layer to it); pick a layer that feeds that score")
                    acts.append(activation.detach().float())
                    grads.append(grad.float())
                    scores.append(batch_scores.detach())
                    chosen.append(batch_targets)
        finally:
            handle.remove()
        return ActivationResult(torch.cat(acts), torch.cat(scores), torch.cat(chosen), torch.cat(grads))

    def _captured(self, capture: _Capture, layer: str) -> torch.Tensor:
        if capture.output is None:
            raise ModelLoadError(f"layer '{layer}' did not run in the forward pass or did not output a tensor; pick another layer (`vexplain layers MODEL`)")
        return capture.output if capture.for_grad else capture.output.float()

    def replaced_scores(self, inputs: torch.Tensor, layer: str, activations: torch.Tensor) -> torch.Tensor:
        """A forward hook swaps ``layer``'s output for the batch (see ``torch_ablation``); the mode used is in ``replacement_engine``."""
        if ACTIVATION_REPLACEMENT not in self.capabilities:
            raise self._unsupported(ACTIVATION_REPLACEMENT, "TorchScript modules take no hooks")
        from .torch_ablation import replaced_scores

        module = self._module(layer)
        with eval_mode(self.model):
            scores, mode = replaced_scores(
                self.model, module, lambda batch: self._scores(self._call(batch)), layer, inputs.to(self.device), activations.to(self.device, self.dtype)
            )
        self.replacement_modes[layer] = mode
        return scores

    def replacement_engine(self, layer: str) -> str:
        mode = self.replacement_modes.get(layer)
        return "torch hook" if mode is None else f"torch hook ({mode})"

    def classifier_weights(self, sample: torch.Tensor | None = None) -> torch.Tensor:
        """The weight of the ``nn.Linear`` that computes the explained output (not merely the last
        one in module order), found by one hooked forward pass on ``sample`` (default: zeros of the
        metadata's input size; a model with a single Linear needs none)."""
        if self._score_function is not None:
            raise InvalidTarget("classifier weights belong to class indices; a callable target has none: use a gradient or perturbation method, or give class indices")
        linears = [m for m in self.model.modules() if isinstance(m, torch.nn.Linear)]
        if not linears:
            raise self._unsupported(CLASSIFIER_WEIGHTS, "the model has no nn.Linear classifier")
        if sample is None and len(linears) == 1:
            return linears[0].weight.detach().float()
        sample = self._sample(sample, CLASSIFIER_WEIGHTS)[:1].to(self.device)
        with eval_mode(self.model), torch.no_grad():
            linear = producing_linear(self.model, lambda: self._call(sample), self.output, self.describe())
        if linear is None:
            raise self._unsupported(CLASSIFIER_WEIGHTS, "the explained output is not computed by an nn.Linear (CAM needs pooling followed by a linear classifier)")
        return linear.weight.detach().float()


TORCH_SUFFIXES = (".pt", ".pth", ".ts", ".jit", ".pkl", ".bin")


class TorchAdapterFactory:
    """Accepts ``nn.Module`` objects, TorchScript files and ``pkg.module:factory`` strings."""

    name = "torch"
    priority = 20
    capabilities = TorchAdapter.capabilities

    @staticmethod
    def accepts(model: Any) -> bool:
        if isinstance(model, torch.nn.Module):
            return True
        if isinstance(model, (str, Path)):
            text = str(model)
            return is_factory_spec(text) or Path(text).suffix.lower() != ".onnx"
        return False

    @staticmethod
    def adapt(model: Any, weights: str | Path | None = None, **options: Any) -> TorchAdapter:
        if isinstance(model, torch.nn.Module):
            return TorchAdapter(model, **options)
        text = str(model)
        if is_factory_spec(text):
            return TorchAdapter(build_from_factory(text, weights), name=text, **options)
        path = Path(text)
        if path.is_file() and not _is_zip(path) and path.suffix.lower() not in TORCH_SUFFIXES:
            from .onnx import OnnxAdapter

            return OnnxAdapter(path, **options)
        if weights is not None:
            raise ModelLoadError(f"--weights goes with a 'pkg.module:factory' model, not with the file {path}")
        return TorchAdapter(load_model_file(path), name=path.name, **options)


def _is_zip(path: Path) -> bool:
    import zipfile

    return zipfile.is_zipfile(path)


@hookimpl
def register_adapters(register) -> None:
    register(TorchAdapterFactory)
