"""ONNX Runtime adapter: forward, intermediate activations as extra outputs, classifier weights
from initializers. Gradients are not available (ONNX Runtime's inference build has no autograd)."""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Sequence

import torch

from vexplain.core.adapter import (
    ACTIVATION_REPLACEMENT,
    ACTIVATIONS,
    CLASSIFIER_WEIGHTS,
    FORWARD,
    ActivationResult,
    ModelAdapter,
    Scorer,
)
from vexplain.core.errors import ModelLoadError
from vexplain.core.hookspecs import hookimpl
from vexplain.core.options import checked, integer, optional

from .onnx_graph import find_cam_head, read_metadata, tensor_ranks, with_extra_outputs
from .ort_session import make_session, run_batched


class OnnxAdapter(ModelAdapter):
    """A model run by ONNX Runtime, from a ``.onnx`` path, serialized bytes, an ``onnx.ModelProto``
    or an ``InferenceSession``.

    ``providers`` defaults to CUDA (when installed) then CPU; ``batch_size`` (default 64) bounds
    each run. A graph with a fixed batch dimension is run in batches of exactly that size.
    Activations and classifier weights need the graph, which an ``InferenceSession`` built from
    a file path still gives; one built from bytes supports ``forward`` only.
    """

    backend = "onnx"
    capabilities = frozenset({FORWARD, ACTIVATIONS, CLASSIFIER_WEIGHTS, ACTIVATION_REPLACEMENT})

    def __init__(self, source: Any, providers: Sequence[str] | None = None, batch_size: int = 64, threads: int | None = None, name: str | None = None):
        super().__init__()
        import onnx
        import onnxruntime as ort

        self.batch_size = checked("adapter 'onnx'", "batch_size", batch_size, integer(1))
        self.providers = list(providers) if providers else None
        self.threads = checked("adapter 'onnx'", "threads", threads, optional(integer(0)))
        self.model = None
        if isinstance(source, ort.InferenceSession):
            self.session = source
            self.providers = source.get_providers()
            path = getattr(source, "_model_path", None)
            self.model = onnx.load(path) if path else None
            self.name = name or (Path(path).name if path else "InferenceSession")
        else:
            self.model, self.name = _load_proto(source, name)
            self.session = make_session(self.model.SerializeToString(), self.providers, threads)
        if self.model is None:
            self.capabilities = frozenset({FORWARD})
        else:
            self.metadata = read_metadata(self.model)
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.output_name = self.session.get_outputs()[0].name
        shape = model_input.shape
        if len(shape) != 4:
            raise ModelLoadError(f"ONNX model '{self.name}' takes input of rank {len(shape)}; vexplain explains image models with (N, C, H, W) input")
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self._channels = shape[1] if isinstance(shape[1], int) else None
        self._ranks: dict[str, int | None] | None = None
        self._extended: dict[str, Any] = {}
        self._tails: dict[str, Any] = {}

    @property
    def input_channels(self) -> int | None:
        return self._channels

    def describe(self) -> str:
        return f"ONNX Runtime model '{self.name}'"

    def forward(self, inputs: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        (scores,) = run_batched(self.session, self.input_name, [self.output_name], inputs, batch_size or self.batch_size, self.fixed_batch)
        return scores

    def scorer(self, engine: str = "auto", sample: torch.Tensor | None = None) -> Scorer:
        if engine not in ("auto", "onnx"):
            raise self._unsupported(f"engine '{engine}'", "an ONNX model runs on engine 'onnx' only")
        notes = {"providers": self.session.get_providers()}
        if self.fixed_batch:
            notes["fixed_batch"] = self.fixed_batch
        return Scorer(lambda batch: self.forward(batch, batch.shape[0]), "onnx", notes)

    def layers(self) -> list[str]:
        if self.model is None:
            return []
        if self._ranks is None:
            self._ranks = tensor_ranks(self.model)
        return [name for name, rank in self._ranks.items() if rank in (4, None)]

    def default_cam_layer(self, sample: torch.Tensor | None = None) -> str:
        head = find_cam_head(self.model) if self.model is not None else None
        if head is None:
            raise self._unsupported(CLASSIFIER_WEIGHTS, "no GlobalAveragePool followed by Gemm/MatMul was found in the graph")
        return head[0]

    def classifier_weights(self) -> torch.Tensor:
        head = find_cam_head(self.model) if self.model is not None else None
        if head is None:
            raise self._unsupported(CLASSIFIER_WEIGHTS, "no GlobalAveragePool followed by Gemm/MatMul was found in the graph")
        return torch.from_numpy(head[1].copy())

    def replaced_scores(self, inputs: torch.Tensor, layer: str, activations: torch.Tensor) -> torch.Tensor:
        """The graph split at ``layer`` (``onnx_split``): only the nodes after it run on the batch."""
        if self.model is None:
            raise self._unsupported(ACTIVATION_REPLACEMENT, "the session was built without a graph vexplain can read")
        tail = self._tails.get(layer)
        if tail is None:
            from .onnx_split import Tail, tail_model

            self.check_layer(layer)
            data, reads_input = tail_model(self.model, layer, self.output_name)
            session = make_session(data, self.providers, self.threads)
            tail = Tail(session, layer, self.input_name, self.output_name, reads_input, self.fixed_batch)
            self._tails[layer] = tail
        return tail.run(inputs, activations)

    def activations(self, inputs: torch.Tensor, layer: str) -> ActivationResult:
        if self.model is None:
            raise self._unsupported(ACTIVATIONS, "the session was built without a graph vexplain can read")
        self.check_layer(layer)
        session = self._extended.get(layer)
        if session is None:
            session = make_session(with_extra_outputs(self.model, [layer]), self.providers, self.threads)
            self._extended[layer] = session
        scores, acts = run_batched(session, self.input_name, [self.output_name, layer], inputs, self.batch_size, self.fixed_batch)
        return ActivationResult(activations=acts, scores=scores)


def _load_proto(source: Any, name: str | None):
    import onnx

    if isinstance(source, onnx.ModelProto):
        return source, name or "ModelProto"
    if isinstance(source, (bytes, bytearray)):
        data, label = bytes(source), name or "bytes"
    else:
        path = Path(source)
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        data, label = path.read_bytes(), name or path.name
        if zipfile.is_zipfile(path):
            raise ModelLoadError(f"{label} is a PyTorch archive, not an ONNX model; load it as TorchScript (a .pt path) or export ONNX")
    try:
        model = onnx.load_from_string(data)
    except Exception:  # protobuf raises DecodeError and friends for non-ONNX bytes
        raise ModelLoadError(f"{label} is not a valid ONNX model (protobuf parse failed); give a .onnx file exported by torch.onnx.export or another converter") from None
    if len(model.graph.node) == 0 or len(model.graph.input) == 0:
        raise ModelLoadError(f"{label} is not a usable ONNX model: its graph has no nodes or no inputs")
    return model, label


class OnnxAdapterFactory:
    """Accepts ``.onnx`` paths, other non-archive files, bytes, ModelProto and InferenceSession."""

    name = "onnx"
    priority = 10
    capabilities = OnnxAdapter.capabilities

    @staticmethod
    def accepts(model: Any) -> bool:
        if isinstance(model, (bytes, bytearray)):
            return True
        if isinstance(model, (str, Path)):
            path = Path(model)
            return path.suffix.lower() == ".onnx" or (path.is_file() and not zipfile.is_zipfile(path))
        module = type(model).__module__
        return module.startswith("onnxruntime") or module.startswith("onnx.")

    @staticmethod
    def adapt(model: Any, **options: Any) -> OnnxAdapter:
        return OnnxAdapter(model, **options)


@hookimpl
def register_adapters(register) -> None:
    register(OnnxAdapterFactory)
