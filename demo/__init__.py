"""Embedded demo for vexplain: a procedural shape data set and a small CNN.

Submodules:

* :mod:`vexplain.demo.scenes` -- cluttered synthetic scenes (numpy + OpenCV).
* :mod:`vexplain.demo.model` -- ``DemoCNN``, its factory and the bundled weights.
* :mod:`vexplain.demo.train` -- script that regenerates the bundled assets.

Nothing is imported here so that ``import vexplain.demo`` stays cheap and
does not pull in torch.
"""
