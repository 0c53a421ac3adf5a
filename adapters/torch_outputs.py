"""Which of a PyTorch model's outputs is explained, and the Linear that computes it.

A model may return a tensor, a tuple or list, a dict, or an object (a Hugging Face ``ModelOutput``,
a dataclass). ``output=`` chooses an entry: an index (position in the tuple, or in the dict's or
object's entries in their order) or a name (dict key or attribute). Without a choice:
a tensor is itself; an object with a tensor ``.logits`` gives its logits (the one obvious
default); a container with exactly one tensor gives that one; anything else refuses class-index
targets with an error listing every entry and its shape — never entry 0 silently.
Callable targets receive the chosen entry when ``output=`` is given, else the whole output.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Callable

import torch

from vexplain.core.errors import InvalidOption


def entries(output: Any) -> list[tuple[str, Any]] | None:
    """``(name, value)`` of a structured output in order, or None for a tensor / unknown object."""
    if isinstance(output, torch.Tensor):
        return None
    if isinstance(output, (tuple, list)) and not hasattr(output, "_fields"):
        return [(str(i), value) for i, value in enumerate(output)]
    if hasattr(output, "_fields"):  # a namedtuple
        return list(zip(output._fields, output))
    if isinstance(output, Mapping):
        return [(str(key), value) for key, value in output.items()]
    if dataclasses.is_dataclass(output):
        return [(f.name, getattr(output, f.name)) for f in dataclasses.fields(output)]
    if hasattr(output, "__dict__"):
        return [(key, value) for key, value in vars(output).items() if not key.startswith("_")]
    return None


def listing(items: list[tuple[str, Any]]) -> str:
    """``"0 'boxes' (2, 4), 1 'scores' (2, 2)"`` (non-tensors by type name)."""
    def shape(value: Any) -> str:
        return f"({', '.join(map(str, value.shape))})" if isinstance(value, torch.Tensor) else type(value).__name__

    return ", ".join(f"{i} '{name}' {shape(value)}" for i, (name, value) in enumerate(items))


def select_output(output: Any, choice: str | int | None, who: str) -> tuple[Any, str | None]:
    """``(the explained tensor, its name)`` from a model's ``output`` (see the module docstring)."""
    if isinstance(output, torch.Tensor):
        if choice is not None and choice not in (0, -1, "0"):
            raise InvalidOption(f"{who} returns one tensor of shape {tuple(output.shape)}; output={choice!r} does not name an entry (leave output unset)")
        return output, None
    items = entries(output)
    if items is None:
        return output, None
    if choice is None:
        logits = getattr(output, "logits", None)
        if isinstance(logits, torch.Tensor):
            return logits, "logits"
        tensors = [(name, value) for name, value in items if isinstance(value, torch.Tensor)]
        if len(tensors) == 1:
            return tensors[0][1], tensors[0][0]
        raise InvalidOption(
            f"{who} returns {len(items)} outputs ({listing(items)}) and class-index targets need one: "
            "choose it with vx.adapt(model, output=NAME_OR_INDEX) (CLI --output NAME), or give targets= a callable that scores the outputs"
        )
    return _pick(items, choice, who)


def _pick(items: list[tuple[str, Any]], choice: str | int, who: str) -> tuple[Any, str]:
    names = [name for name, _ in items]
    if isinstance(choice, bool) or not isinstance(choice, (int, str)):
        raise InvalidOption(f"output must be an entry name or index of what {who} returns ({listing(items)}); got {type(choice).__name__}")
    if isinstance(choice, str) and choice not in names and choice.lstrip("-").isdigit():
        choice = int(choice)  # "--output 1" on the command line: an index unless an entry has that name
    if isinstance(choice, int):
        if not -len(items) <= choice < len(items):
            raise InvalidOption(f"output {choice} is out of range: {who} returns {len(items)} outputs ({listing(items)})")
        name, value = items[choice]
    elif choice in names:
        name, value = items[names.index(choice)]
    else:
        raise InvalidOption(f"{who} returns no output '{choice}'; its outputs: {listing(items)}")
    if not isinstance(value, torch.Tensor):
        raise InvalidOption(f"output '{name}' of {who} is a {type(value).__name__}, not a tensor; its outputs: {listing(items)}")
    return value, name


def on_output(function: Callable[[Any], torch.Tensor], choice: str | int, who: str) -> Callable[[Any], torch.Tensor]:
    """``function`` applied to the chosen entry of the model's output (callable targets with ``output=``)."""
    def scored(output: Any) -> torch.Tensor:
        return function(select_output(output, choice, who)[0])

    scored.__qualname__ = getattr(function, "__qualname__", type(function).__name__)
    return scored


def producing_linear(model: torch.nn.Module, run: Callable[[], Any], choice: str | int | None, who: str) -> torch.nn.Linear | None:
    """The ``nn.Linear`` whose output is the explained tensor (or a view of it), found by one
    hooked forward pass (``run``); None when no Linear computes it."""
    produced: list[tuple[torch.nn.Linear, torch.Tensor]] = []

    def hook(module: torch.nn.Module, args: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            produced.append((module, out))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    try:
        explained, _ = select_output(run(), choice, who)
    finally:
        for handle in handles:
            handle.remove()
    if not isinstance(explained, torch.Tensor):
        return None
    for module, out in reversed(produced):
        if out is explained:
            return module
    for module, out in reversed(produced):  # a view of the Linear's output (flatten, squeeze)
        if out.numel() == explained.numel() and out.untyped_storage().data_ptr() == explained.untyped_storage().data_ptr():
            return module
    return None
