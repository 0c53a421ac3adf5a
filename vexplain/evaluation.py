"""Evaluating explanations, and the building blocks metrics and front-ends share.

``vx.evaluate`` / ``vx.metrics`` / ``vx.metric_info`` are the entry points. Here:
``as_masks(ground_truth, count, (H, W))`` turns boxes ``(N, 4)`` (x0, y0, x1, y1; end-exclusive)
or masks ``(N, H, W)`` into bool masks; ``peaks(maps)`` gives each map's (row, column) maximum
(the first in row-major order on ties); ``within(points, masks, tolerance)`` says whether each
point lies within ``tolerance`` pixels (Euclidean) of its mask: the pointing game of Zhang et
al. 2016. ``MASKS`` and ``METHOD`` are the values of ``MetricInfo.needs``: a metric needing
ground-truth masks, or one that re-explains with the method.
"""
from vexplain.core.evaluation import Evaluation, MetricInfo, as_masks
from vexplain.core.metric import MASKS, METHOD, EvaluationCase, Metric, MetricResult
from vexplain.core.metric_tools import peaks, within

__all__ = ["MASKS", "METHOD", "Evaluation", "EvaluationCase", "Metric", "MetricInfo", "MetricResult", "as_masks", "peaks", "within"]
