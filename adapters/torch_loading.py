"""Loading PyTorch models from files and factory strings, never unpickling arbitrary objects."""
from __future__ import annotations

import importlib
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from vexplain.core.errors import ModelLoadError

FACTORY_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
STATE_DICT_HINT = "save model.state_dict() and pass 'pkg.module:factory' with --weights, or export TorchScript or ONNX"


def is_factory_spec(text: str) -> bool:
    """True for ``pkg.module:factory`` strings that are not existing files."""
    return bool(FACTORY_PATTERN.match(text)) and not Path(text).exists()


def load_model_file(path: str | Path) -> torch.nn.Module:
    """A TorchScript file. State dicts and pickled full models are refused with a pointer to what works."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(f"{path} is neither a TorchScript archive nor an ONNX model; give a .onnx file, a TorchScript file, or 'pkg.module:factory' with --weights")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if any(name.split("/", 1)[-1].startswith("code/") for name in names) and any(n.endswith("constants.pkl") for n in names):
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as error:  # corrupt archives raise many types; report one line
            raise ModelLoadError(f"cannot load TorchScript file {path}: {str(error).splitlines()[0]}") from None
        check_script_ops(module, path)
        return module
    contents = load_weights(path)
    raise ModelLoadError(
        f"{path} holds a state_dict ({len(contents)} tensors), not a model: pass 'pkg.module:factory' as MODEL with --weights {path}"
    )


#: TorchScript operators that reach files, other processes or the network; a model has no use for them
FORBIDDEN_OPS = frozenset({"aten::from_file", "aten::save", "debugprims::load_tensor"})
FORBIDDEN_NAMESPACES = ("c10d::", "_c10d_functional", "symm_mem::")


def check_script_ops(module: torch.jit.ScriptModule, path: str | Path) -> None:
    """Refuse a TorchScript module whose code calls file, process or network operators.

    ``torch.jit.load`` unpickles with TorchScript's own restricted unpickler (no Python globals run),
    but the archive's code runs on every forward and may call any registered operator; e.g.
    ``torch.from_file`` reads any file, relative to the cwd. Every method of every submodule is
    inlined and its nodes (nested blocks included) are checked against ``FORBIDDEN_OPS`` and
    ``FORBIDDEN_NAMESPACES``. This is a deny list: treat a TorchScript file as code.
    """
    for submodule in module.modules():
        for name in submodule._c._method_names():
            graph = submodule._c._get_method(name).inlined_graph  # kept alive while its blocks are walked
            stack = [graph.block()]
            while stack:
                for node in stack.pop().nodes():
                    kind = node.kind()
                    if kind in FORBIDDEN_OPS or kind.startswith(FORBIDDEN_NAMESPACES):
                        raise ModelLoadError(
                            f"refusing TorchScript file {path}: its method {name!r} calls {kind}, which reads or writes files or talks to other processes; a model's forward needs neither (export ONNX or use 'pkg.module:factory' with --weights)"
                        )
                    stack.extend(node.blocks())


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict read with ``weights_only=True``; pickled objects are refused."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"weights file not found: {path}")
    try:
        contents = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelLoadError(
            f"refusing to unpickle {path}: it holds pickled Python objects (a full model?); vexplain only reads weights; {STATE_DICT_HINT}"
        ) from None
    except Exception as error:
        raise ModelLoadError(f"cannot read weights from {path}: {str(error).splitlines()[0]}") from None
    if not isinstance(contents, dict) or not all(isinstance(v, torch.Tensor) for v in contents.values()):
        raise ModelLoadError(f"{path} does not hold a state_dict (a mapping of names to tensors); {STATE_DICT_HINT}")
    return contents


def build_from_factory(spec: str, weights: str | Path | None = None) -> torch.nn.Module:
    """``pkg.module:factory`` called with no arguments, then ``weights`` loaded strictly when given."""
    if not FACTORY_PATTERN.match(spec):
        raise ModelLoadError(f"model factory must look like 'pkg.module:factory'; got {spec!r}")
    module_name, attribute = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ModelLoadError(f"cannot import {module_name!r} for factory {spec!r}: {error}") from None
    factory: Any = getattr(module, attribute, None)
    if not callable(factory):
        raise ModelLoadError(f"{module_name!r} has no callable {attribute!r}; give 'pkg.module:factory'")
    model = factory()
    if not isinstance(model, torch.nn.Module):
        raise ModelLoadError(f"factory {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        state = load_weights(weights)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            first = " ".join(str(error).split())[:300]
            raise ModelLoadError(f"weights {weights} do not fit {spec}: {first}") from None
    return model
