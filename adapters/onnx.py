"""ONNX Runtime adapter: forward, intermediate activations as extra outputs, classifier weights
from initializers. Gradients are not available (ONNX Runtime's inference build has no autograd).

Which output is explained, and whether a final Softmax/Sigmoid is skipped, is ``onnx_outputs``'
business; layers and the CAM head are read from the graph with its constants folded
(``onnx_fold``), which is also the graph activations and splits run on.
"""
from __future__ import annotations

import copy
import threading
import zipfile
from pathlib import Path
from typing import Any, Sequence

import torch

from vexplain.core.adapter import (
    ACTIVATION_REPLACEMENT,
    ACTIVATIONS,
    CLASSIFIER_WEIGHTS,
    DEFAULT_CAM_LAYER,
    FORWARD,
    ActivationResult,
    ModelAdapter,
    Scorer,
)
from vexplain.core.errors import InvalidOption, InvalidTarget, ModelLoadError
from vexplain.core.hookspecs import hookimpl
from vexplain.core.notices import warn
from vexplain.core.targets import ScoreFunction
from vexplain.core.options import checked, integer, optional
from vexplain.core.token_grids import token_layout

from .onnx_files import external_tensors, inline_external_data, load_onnx_file, parse_onnx
from .onnx_graph import activation_names, find_cam_head, read_metadata, with_extra_outputs
from .onnx_tokens import default_token_tensor, graph_patch_stride, token_tensor_names
from .onnx_outputs import OutputChoice, choose_output, class_scores, scored
from .ort_session import make_session, run_batched


class OnnxAdapter(ModelAdapter):
    """A model run by ONNX Runtime, from a ``.onnx`` path, serialized bytes, an ``onnx.ModelProto``
    or an ``InferenceSession``.

    ``providers`` defaults to CUDA (when installed) then CPU; ``batch_size`` (default 64) bounds
    each run. A graph with a fixed batch dimension is run in batches of exactly that size.
    ``output`` (name or index) chooses the explained graph output (required for class-index
    targets when the graph has several); ``scores`` = ``"logits"`` (default: a Softmax/Sigmoid
    computing that output is skipped, its input is scored) or ``"output"`` (see ``onnx_outputs``).
    Activations and classifier weights need the graph, which an ``InferenceSession`` built from
    a file path still gives; one built from bytes supports ``forward`` only. Calls may overlap
    (ONNX Runtime sessions are thread-safe and nothing here changes the model); the sessions
    built lazily per layer are made once, under a lock.
    External tensor data is read by vexplain from the model file's own folder only (``onnx_files``);
    bytes and a ``ModelProto`` with external references need ``base_dir``, the folder holding the
    data (a path always reads from its own folder; ``base_dir`` is ignored there).
    """

    backend = "onnx"
    capabilities = frozenset({FORWARD, ACTIVATIONS, CLASSIFIER_WEIGHTS, ACTIVATION_REPLACEMENT})
    #: concurrent explain/evaluate calls run in parallel (``core/concurrency.py``)
    exclusive_keys: tuple = ()
    #: set by ``with_score_function`` (callable targets): scores are then ``function(outputs)`` as (N, 1)
    _score_function: ScoreFunction | None = None

    def __init__(
        self, source: Any, providers: Sequence[str] | None = None, batch_size: int = 64, threads: int | None = None,
        name: str | None = None, output: str | int | None = None, scores: str = "logits", base_dir: str | Path | None = None,
    ):
        super().__init__()
        import onnxruntime as ort

        self.batch_size = checked("adapter 'onnx'", "batch_size", batch_size, integer(1))
        self.providers = list(providers) if providers else None
        self.threads = checked("adapter 'onnx'", "threads", threads, optional(integer(0)))
        self.model = None
        session = None
        if isinstance(source, ort.InferenceSession):
            session = source
            self.providers = source.get_providers()
            path = getattr(source, "_model_path", None)
            self.model = load_onnx_file(path) if path else None
            self.name = name or (Path(path).name if path else "InferenceSession")
        else:
            self.model, self.name = _load_proto(source, name, base_dir)
        if self.model is None:
            self.capabilities = frozenset({FORWARD})
        else:
            self.metadata = read_metadata(self.model, f"ONNX metadata of {self.name}")
        self._data = self.model.SerializeToString() if self.model is not None else None
        if session is None:
            session = make_session(self._data, self.providers, threads)
        outputs = [(o.name, tuple(d if d else "?" for d in o.shape)) for o in session.get_outputs()]
        self.choice: OutputChoice = choose_output(self.model, outputs, output, scores, self.describe())
        extra = [self.choice.scores_tensor] if self.choice.scores_tensor not in (None, *self.choice.names) else []
        self.session = make_session(with_extra_outputs(self.model, extra), self.providers, threads) if extra else session
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        shape = model_input.shape
        if len(shape) != 4:
            raise ModelLoadError(f"ONNX model '{self.name}' takes input of rank {len(shape)}; vexplain explains image models with (N, C, H, W) input")
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self._channels = shape[1] if isinstance(shape[1], int) else None
        if "input_size" not in self.metadata and all(isinstance(d, int) and d > 0 for d in shape[2:]):
            self.metadata = {**self.metadata, "input_size": [shape[2], shape[3]]}  # the graph's fixed H, W: photos are resized to it
        self._graph: Any = None
        self.folding: str | None = None
        self._layers: list[str] | None = None
        self._tokens: list[str] | None = None
        self._token_defaults: dict[tuple[int, ...], str | None] = {}  # default token layer per input shape
        self._heads: dict[str | None, Any] = {}
        self._extended: dict[tuple, Any] = {}
        self._tails: dict[tuple, Any] = {}
        self._cache_lock = threading.RLock()  # shared by bound copies (copy.copy), like the caches

    @property
    def input_channels(self) -> int | None:
        return self._channels

    def describe(self) -> str:
        return f"ONNX Runtime model '{self.name}'"

    @property
    def output_name(self) -> str | None:
        """The explained graph output: the chosen one, or the only one (None: several, none chosen)."""
        return self.choice.chosen if self.choice.chosen is not None else (self.choice.names[0] if len(self.choice.outputs) == 1 else None)

    def output_notes(self) -> dict[str, Any]:
        return self.choice.notes()

    @property
    def graph(self) -> Any:
        """The graph with its constants folded (``onnx_fold``, cached), read for layers, the CAM
        head, activations and splits; ``folding`` says how it was obtained."""
        with self._cache_lock:
            if self._graph is None and self.model is not None:
                from .onnx_fold import folded

                self._graph, self.folding = folded(self.model, self._data)
        if self.folding and self.folding.startswith("unfolded: "):
            warn(f"ONNX graph not constant-folded ({self.folding[len('unfolded: '):]}); layers and the CAM head are read from the graph as exported")
        return self._graph

    # -- outputs -----------------------------------------------------------------------------

    def _fetched(self) -> list[str]:
        """The tensors each run fetches: the callable's outputs, or the one class scores come from."""
        if self._score_function is not None:
            return self.choice.callable_names()
        return self.choice.class_score_names(self.describe())

    def _read(self, tensors: list[torch.Tensor], rows: int) -> torch.Tensor:
        """Fetched tensors (in ``_fetched`` order) as scores: ``(N, K)`` class scores, or ``(N, 1)`` of a callable."""
        if self._score_function is not None:
            names = self.choice.callable_names()
            single = self.choice.chosen is not None or len(self.choice.outputs) == 1
            return scored(self._score_function, names, tensors, single, rows)
        return class_scores(tensors[0], self._fetched()[0], self.describe())

    def with_score_function(self, function: ScoreFunction) -> "OnnxAdapter":
        """Bound to a callable target: it receives the chosen (or only) output as a CPU torch
        tensor, or ``{output name: tensor}`` for every output of a multi-output graph."""
        bound = copy.copy(self)
        bound._score_function = function
        return bound

    def forward(self, inputs: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        names = self._fetched()
        tensors = run_batched(self.session, self.input_name, names, inputs, batch_size or self.batch_size, self.fixed_batch)
        return self._read(tensors, len(inputs))

    def engine_key(self) -> str:
        """The graph's SHA-256 (and the providers), or the session object's id when no graph is known."""
        if self._data is None:
            return super().engine_key()
        with self._cache_lock:
            if getattr(self, "_engine_key", None) is None:
                import hashlib

                self._engine_key = f"onnx:{hashlib.sha256(self._data).hexdigest()[:32]}:{','.join(self.session.get_providers())}"
        return self._engine_key

    def scorer(self, engine: str = "auto", sample: torch.Tensor | None = None) -> Scorer:
        self.check_engine("forward", engine)
        notes = {"providers": self.session.get_providers()}
        if self.fixed_batch:
            notes["fixed_batch"] = self.fixed_batch
        return Scorer(lambda batch: self.forward(batch, batch.shape[0]), "onnx", notes)

    # -- layers and the CAM head -------------------------------------------------------------

    def layers(self) -> list[str]:
        """Node outputs of the folded graph that may be 4-D feature maps (rank 4 or unknown) and,
        when the graph has a patch embedding, its ``(N, T, D)`` token tensors (``onnx_tokens``)."""
        with self._cache_lock:
            if self._layers is None:
                self._layers = [] if self.model is None else activation_names(self.graph) + self._token_names()
        return self._layers

    def patch_stride(self) -> tuple[int, int] | None:
        """The stride of the graph's patch embedding (``onnx_tokens``), or ``None``."""
        return None if self.model is None else graph_patch_stride(self.graph)

    def layer_grids(self, sample: torch.Tensor) -> dict[str, tuple[tuple[int, ...], dict[str, Any]]]:
        """The ``(N, T, D)`` token tensors that fit a patch grid of ``sample`` (``token_layout``),
        with their shapes and layouts, in graph order (one run)."""
        names = self._token_names()
        if not names:
            return {}
        stride, found = self.patch_stride(), {}
        for name, value in zip(names, self._values_at(names, sample)):
            try:
                layout = token_layout(tuple(value.shape), tuple(sample.shape[2:]), stride, name)
            except InvalidOption:
                continue
            found[name] = (tuple(value.shape), layout.notes())
        return found

    def layer_shapes(self, sample: torch.Tensor) -> dict[str, tuple[int, ...]]:
        """The layers that really are 4-D maps of more than one position on ``sample``, with their shapes (one run)."""
        names = self.layers()
        if not names:
            return {}
        return {name: tuple(v.shape) for name, v in zip(names, self._values_at(names, sample)) if v.dim() == 4 and v.shape[2] * v.shape[3] > 1}

    def _values_at(self, names: list[str], sample: torch.Tensor) -> list[torch.Tensor]:
        """The tensors ``names`` of the graph on ``sample[:1]`` (one run of a session that outputs them)."""
        session = make_session(with_extra_outputs(self.graph, names), self.providers, self.threads)
        return run_batched(session, self.input_name, names, sample[:1], 1, self.fixed_batch)

    def _token_names(self) -> list[str]:
        """The graph's ``(N, T, D)`` token tensors (``onnx_tokens``), read once."""
        with self._cache_lock:
            if self._tokens is None:
                self._tokens = [] if self.model is None else token_tensor_names(self.graph)
        return self._tokens

    def _head(self) -> Any:
        explained = None if self._score_function is not None else self.choice.scores_tensor
        with self._cache_lock:
            if explained not in self._heads:
                self._heads[explained] = find_cam_head(self.graph, explained) if self.model is not None else None
        return self._heads[explained]

    def supports(self, capability: str) -> bool:
        """As declared, except that classifier weights need a pooling → Gemm/MatMul head in the graph."""
        if capability == CLASSIFIER_WEIGHTS and capability in self.capabilities:
            try:
                return self._head() is not None
            except (InvalidTarget, ModelLoadError):
                return False
        return capability in self.capabilities

    def default_cam_layer(self, sample: torch.Tensor | None = None) -> str:
        head = self._head()
        size = self.metadata.get("input_size")
        if head is None and self._token_names() and (sample is not None or size):
            default = self._default_token_layer(sample if sample is not None else torch.zeros((1, self.input_channels or 3, *size)))
            if default is not None:
                return default
        if head is None:
            raise self._unsupported(
                DEFAULT_CAM_LAYER,
                "no GlobalAveragePool (or ReduceMean over H, W) feeding a Gemm/MatMul that computes the explained output; pass layer= a name from `vexplain layers MODEL`",
            )
        return head[0]

    def _default_token_layer(self, sample: torch.Tensor) -> str | None:
        """``default_token_tensor`` on the token grids of ``sample``, cached per input shape."""
        key = tuple(sample.shape[1:])
        with self._cache_lock:
            if key not in self._token_defaults:
                grids = {name: notes for name, (_, notes) in self.layer_grids(sample).items()}
                self._token_defaults[key] = default_token_tensor(self.graph, grids)
            return self._token_defaults[key]

    def classifier_weights(self, sample: torch.Tensor | None = None) -> torch.Tensor:
        if self._score_function is not None:
            raise InvalidTarget("classifier weights belong to class indices; a callable target has none: use a gradient or perturbation method, or give class indices")
        self._fetched()  # several outputs and none chosen: say so, not that the head is missing
        head = self._head()
        if head is None:
            raise self._unsupported(CLASSIFIER_WEIGHTS, f"no GlobalAveragePool followed by a Gemm/MatMul computing '{self.choice.scores_tensor}' was found in the graph")
        return torch.from_numpy(head[1].copy())

    # -- activations and splits --------------------------------------------------------------

    def replaced_scores(self, inputs: torch.Tensor, layer: str, activations: torch.Tensor) -> torch.Tensor:
        """The graph split at ``layer`` (``onnx_split``): only the nodes after it run on the batch."""
        if self.model is None:
            raise self._unsupported(ACTIVATION_REPLACEMENT, "the session was built without a graph vexplain can read")
        names = self._fetched()
        key = (layer, tuple(names))
        tail = self._tails.get(key)
        if tail is None:
            from .onnx_split import Tail, tail_model

            self.check_layer(layer)
            with self._cache_lock:
                tail = self._tails.get(key)
                if tail is None:
                    data, reads_input = tail_model(self.graph, layer, names)
                    session = make_session(data, self.providers, self.threads)
                    tail = self._tails[key] = Tail(session, layer, self.input_name, names, reads_input, self.fixed_batch)
        return self._read(tail.run(inputs, activations), len(activations))

    def activations(self, inputs: torch.Tensor, layer: str) -> ActivationResult:
        if self.model is None:
            raise self._unsupported(ACTIVATIONS, "the session was built without a graph vexplain can read")
        self.check_layer(layer)
        names = self._fetched()
        key = (layer, tuple(names))
        with self._cache_lock:
            session = self._extended.get(key)
            if session is None:
                session = self._extended[key] = make_session(with_extra_outputs(self.graph, [*names, layer]), self.providers, self.threads)
        *fetched, acts = run_batched(session, self.input_name, [*names, layer], inputs, self.batch_size, self.fixed_batch)
        return ActivationResult(activations=acts, scores=self._read(fetched, len(inputs)))


def _load_proto(source: Any, name: str | None, base_dir: str | Path | None = None):
    """(ModelProto with every tensor inline, label); external data only from the model's folder."""
    import onnx

    folder = Path(base_dir) if base_dir is not None else None
    if isinstance(source, onnx.ModelProto):
        label = name or "ModelProto"
        if external_tensors(source):
            duplicate = onnx.ModelProto()
            duplicate.CopyFrom(source)  # the caller's proto is never modified
            source = inline_external_data(duplicate, folder, label)
        model = source
    elif isinstance(source, (bytes, bytearray)):
        label = name or "bytes"
        model = inline_external_data(parse_onnx(bytes(source), label), folder, label)
    else:
        path = Path(source)
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        label = name or path.name
        if zipfile.is_zipfile(path):
            raise ModelLoadError(f"{label} is a PyTorch archive, not an ONNX model; load it as TorchScript (a .pt path) or export ONNX")
        model = inline_external_data(parse_onnx(path.read_bytes(), label), path.parent, label)
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
