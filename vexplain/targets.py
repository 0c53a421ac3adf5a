"""Targets: what each input is explained for (``targets=`` of ``vx.explain`` and ``vx.evaluate``).

>>> import vexplain as vx
>>> vx.explain(detector, x, "occlusion", targets=vx.targets.Box([10, 12, 40, 48], label=2))  # doctest: +SKIP
>>> vx.explain(segmenter, x, "rise", targets=vx.targets.Region(label=1, mask=mask))          # doctest: +SKIP

Class indices (None, an int, one int per input) and any callable ``(raw output) -> (N,)`` work
as they are; ``Box``, ``Region`` and ``Similarity`` are the built-in kinds, ``Target`` the base
a plugin's kind subclasses (registered with the ``register_targets`` hook).
"""
from vexplain.core.boxes import LAYOUTS, Box
from vexplain.core.target_kinds import Region, Similarity, pick_output
from vexplain.core.target_text import TargetKindInfo, kinds, parse
from vexplain.core.targets import FunctionTarget, PerInput, Target

__all__ = ["LAYOUTS", "Box", "FunctionTarget", "PerInput", "Region", "Similarity", "Target", "TargetKindInfo", "kinds", "parse", "pick_output"]
