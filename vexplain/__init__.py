"""vexplain: explain convolutional networks as pictures.

>>> import vexplain as vx
>>> exp = vx.explain(model, inputs, method="gradcam")   # doctest: +SKIP
>>> exp.maps.shape                                      # doctest: +SKIP
(N, H, W)
"""
from vexplain.core.adapter import ModelAdapter
from vexplain.core.api import MethodInfo, adapt, explain, methods, plugin_failures
from vexplain.core.errors import (
    ImageLoadError,
    InvalidInput,
    InvalidOption,
    InvalidTarget,
    ModelLoadError,
    OutputError,
    PluginError,
    UnknownLayer,
    UnknownMethod,
    UnsupportedCapability,
    VexplainError,
)
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.evaluation import Evaluation, MetricInfo, evaluate, metrics
from vexplain.core.explanation import Explanation
from vexplain.core.metric import EvaluationCase, Metric, MetricResult, UnknownMetric
from vexplain.core.hookspecs import hookimpl
from vexplain.core.notebook import compare
from vexplain.core.options import Option
from vexplain.core.preprocessing import PreparedImages, prepare_images
from vexplain import targets
from vexplain.datasets.api import DatasetRun, evaluate_dataset, explain_dataset

__version__ = "0.1.0"

__all__ = [
    "Attribution",
    "DatasetRun",
    "Evaluation",
    "EvaluationCase",
    "Explainer",
    "Explanation",
    "ImageLoadError",
    "InvalidInput",
    "InvalidOption",
    "InvalidTarget",
    "MethodInfo",
    "Metric",
    "MetricInfo",
    "MetricResult",
    "ModelAdapter",
    "ModelLoadError",
    "Option",
    "OutputError",
    "PreparedImages",
    "PluginError",
    "UnknownLayer",
    "UnknownMethod",
    "UnknownMetric",
    "UnsupportedCapability",
    "VexplainError",
    "adapt",
    "compare",
    "evaluate",
    "evaluate_dataset",
    "explain",
    "explain_dataset",
    "hookimpl",
    "methods",
    "metrics",
    "plugin_failures",
    "prepare_images",
    "targets",
]
