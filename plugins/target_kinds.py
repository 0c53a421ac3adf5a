"""The built-in target kinds (box, region, similarity), registered like a third-party plugin's."""
from __future__ import annotations

from vexplain.core.boxes import Box
from vexplain.core.hookspecs import hookimpl
from vexplain.core.target_kinds import Region, Similarity


@hookimpl
def register_targets(register) -> None:
    register(Box)
    register(Region)
    register(Similarity)
