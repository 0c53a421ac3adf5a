"""Targets written as text (the CLI's ``--target``) and the list of registered target kinds."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .errors import InvalidTarget
from .registry import REGISTRY
from .targets import Target


@dataclass(frozen=True)
class TargetKindInfo:
    """A registered target kind as listed by ``vx.targets.kinds()``."""

    name: str
    summary: str
    plugin: str


def kinds() -> list[TargetKindInfo]:
    """The registered target kinds, sorted by name."""
    return [TargetKindInfo(name, entry.obj.summary, entry.plugin) for name, entry in sorted(REGISTRY.target_kinds().items())]


def parse(text: str | None, class_names: Sequence[str] | None = None, input_size: tuple[int, int] | None = None) -> int | Target | None:
    """A target from text: None stays None (each input's top class); an integer is a class index;
    a class name of ``class_names`` is its index; ``NAME=TEXT`` builds the registered target kind
    NAME from TEXT (``box=x0,y0,x1,y1[:label]``, ``region=mask.png[:label]``, ``similarity=v.npy``);
    ``input_size`` (H, W) is the model input's, for kinds that resize (region masks)."""
    if text is None:
        return None
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    if class_names and text in class_names:
        return list(class_names).index(text)
    name, sep, rest = text.partition("=")
    if sep:
        kind = REGISTRY.target_kind(name.strip())
        return kind.obj.from_text(rest.strip(), class_names=class_names, input_size=input_size)
    known = f"; class names: {', '.join(class_names)}" if class_names else ""
    forms = ", ".join(f"{k.name}=..." for k in kinds())
    raise InvalidTarget(f"--target must be a class index or a class name, or KIND=VALUE ({forms}){known}; got {text!r}")
