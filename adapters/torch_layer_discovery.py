"""The layers of a PyTorch model as CAM methods see them: the named modules, which of them output
4-D feature maps or token grids on a sample (one hooked forward pass), the patch embedding's
stride, and the default CAM layer (the last feature map, or a transformer's token layer), cached
per model, input shape and module structure. A mixin of ``TorchAdapter``: it uses the adapter's
``model``, ``device``, ``capabilities``, ``metadata``, ``_call`` and ``_unsupported``."""
from __future__ import annotations

import weakref
from typing import Any

import torch

from vexplain.core.adapter import ACTIVATIONS, DEFAULT_CAM_LAYER

from .token_grids import default_token_layer, find_patch_stride, grid_layers
from .torch_eval import eval_mode
from .torch_layers import feature_map_shapes

#: default CAM layer per model, input shape and module structure (it does not depend on the weights)
_DEFAULT_LAYERS: "weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple, str]]" = weakref.WeakKeyDictionary()
#: 4-D layer shapes per model, input shape and module structure (excitation backprop's default layer reads them every call)
_LAYER_SHAPES: "weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple, dict[str, tuple[int, ...]]]]" = weakref.WeakKeyDictionary()


class TorchLayerDiscovery:
    """Layer listing, shapes, token grids and the default CAM layer of ``self.model``."""

    def _sample(self, sample: torch.Tensor | None, capability: str) -> torch.Tensor:
        """``sample``, or zeros of the metadata's input size to trace shapes with."""
        if sample is not None:
            return sample
        size = self.metadata.get("input_size")
        if not size:
            raise self._unsupported(capability, "give a sample input to trace the model with")
        return torch.zeros((1, self.metadata.get("channels", 3), *size))

    def layers(self) -> list[str]:
        return [name for name, _ in self.model.named_modules() if name]

    def layer_shapes(self, sample: torch.Tensor) -> dict[str, tuple[int, ...]]:
        """Modules whose output on ``sample`` is a 4-D feature map of more than one position, with
        its shape (one hooked pass, cached per input shape and module structure)."""
        if ACTIVATIONS not in self.capabilities:
            return {}
        known = _LAYER_SHAPES.setdefault(self.model, {})
        key = (tuple(sample.shape[1:]), tuple((n, type(m)) for n, m in self.model.named_modules()))
        if key not in known:
            shapes = self._feature_maps(sample[:1].to(self.device))
            known[key] = {name: shapes[name] for name in self.layers() if name in shapes}
        return dict(known[key])

    def patch_stride(self) -> tuple[int, int] | None:
        return find_patch_stride(self.model) if ACTIVATIONS in self.capabilities else None

    def layer_grids(self, sample: torch.Tensor) -> dict[str, tuple[tuple[int, ...], dict[str, Any]]]:
        """Token-grid and channels-last layers on ``sample`` (``token_grids.grid_layers``), in ``layers()`` order."""
        if ACTIVATIONS not in self.capabilities:
            return {}
        sample = sample[:1].to(self.device)
        with eval_mode(self.model), torch.no_grad():
            found = grid_layers(self.model, lambda: self._call(sample), 1, tuple(sample.shape[2:]))
        return {name: found[name] for name in self.layers() if name in found and found[name][1]}

    def _feature_maps(self, sample: torch.Tensor) -> dict[str, tuple[int, ...]]:
        with eval_mode(self.model), torch.no_grad():
            return feature_map_shapes(self.model, lambda: self._call(sample))

    def default_cam_layer(self, sample: torch.Tensor | None = None) -> str:
        """The outermost module whose output is the last 4-D activation with more than one pixel.

        Found by one hooked forward pass on ``sample`` (or zeros of the metadata's input size);
        cached per input shape. For ``nn.Sequential`` feature stacks this is the stack itself,
        for ResNets the last residual stage.
        """
        if ACTIVATIONS not in self.capabilities:
            raise self._unsupported(ACTIVATIONS, "TorchScript modules take no hooks")
        sample = self._sample(sample, ACTIVATIONS)
        known = _DEFAULT_LAYERS.setdefault(self.model, {})
        key = (tuple(sample.shape[1:]), tuple((n, type(m)) for n, m in self.model.named_modules()))
        if key not in known:
            known[key] = self._find_last_spatial(sample[:1].to(self.device))
        return known[key]

    def _find_last_spatial(self, sample: torch.Tensor) -> str:
        with eval_mode(self.model), torch.no_grad():
            grids = grid_layers(self.model, lambda: self._call(sample), len(sample), tuple(sample.shape[2:]))
        token_default = default_token_layer(self.model, grids)
        if token_default is not None:
            return token_default
        found = list(self._feature_maps(sample))
        if not found:
            raise self._unsupported(DEFAULT_CAM_LAYER, "no layer outputs a 4-D feature map with more than one pixel; pass layer=")
        return found[-1]
