"""vexplain: explain vision models' decisions as pictures.

>>> import vexplain as vx
>>> exp = vx.explain(model, inputs, method="gradcam")   # doctest: +SKIP
>>> exp.maps.shape                                      # doctest: +SKIP
(N, H, W)

The public API (what users, the CLI and the viewer may rely on; everything else is private,
reachable but free to change):

* ``vexplain``: the names in ``__all__``: ``adapt``, ``explain``, ``evaluate``, ``compare``,
  ``explain_dataset``; the registry as data: ``methods(supported_by=None)`` (``MethodInfo``
  per method; given a model or adapter, only the methods it can run), ``method_info(name)``
  (by name or alias), ``metrics()`` / ``metric_info(name)`` (``MetricInfo``),
  ``resolve_options(name, options, kind="method"|"metric")`` (validated options, defaults filled
  in), ``plugin_failures()``; the result and plugin types (``Explanation``, ``Evaluation``,
  ``Explainer``, ``Attribution``, ``Metric``, ``Option``, ``ModelAdapter``, ``hookimpl``...) and
  the typed errors.
* The public submodules, ``PUBLIC_MODULES``, each with its own ``__all__`` and docstring:
  ``vexplain.targets`` (what inputs are explained for), ``vexplain.errors`` (typed errors,
  ``one_line``, ``require_extra``), ``vexplain.options`` (option declarations and parsing),
  ``vexplain.images`` (files to inputs), ``vexplain.evaluation`` (ground-truth masks, map peaks,
  what metrics need), ``vexplain.files`` (safe output files, bounded JSON, model metadata),
  ``vexplain.progress`` (progress bars), ``vexplain.display`` (figure grids, boxes, peak marks,
  markdown tables), ``vexplain.models`` (models from a path or ``pkg.module:factory`` spec).
* The packages ``vexplain.demo`` (the shipped demo model, its scenes, ``sample_image()``) and
  ``vexplain.datasets`` (data-set runs and their Parquet rows).

Not API: ``vexplain.core``, ``vexplain.adapters`` and ``vexplain.plugins`` (implementation: a
public name defined there is public only through the modules above), any name starting with
``_``, and the front-ends ``vexplain.cli`` and ``vexplain.viewer``, which use only the API above
(``tests/test_cli_public_api.py`` checks the CLI's imports).
"""
from vexplain.core.adapter import ModelAdapter
from vexplain.core.api import MethodInfo, adapt, explain, method_info, methods, plugin_failures, resolve_options
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
from vexplain.core.evaluation import Evaluation, MetricInfo, evaluate, metric_info, metrics
from vexplain.core.explanation import Explanation
from vexplain.core.metric import EvaluationCase, Metric, MetricResult, UnknownMetric
from vexplain.core.hookspecs import hookimpl
from vexplain.core.notebook import compare
from vexplain.core.options import Option
from vexplain.core.preprocessing import PreparedImages, prepare_images
from vexplain import display, errors, evaluation, files, images, models, options, progress, targets
from vexplain.datasets.api import DatasetRun, evaluate_dataset, explain_dataset

__version__ = "0.1.0"

#: the public submodules (see the module docstring); each has ``__all__`` and a docstring
PUBLIC_MODULES = (
    "vexplain.targets",
    "vexplain.errors",
    "vexplain.options",
    "vexplain.images",
    "vexplain.evaluation",
    "vexplain.files",
    "vexplain.progress",
    "vexplain.display",
    "vexplain.models",
)

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
    "method_info",
    "methods",
    "metric_info",
    "metrics",
    "plugin_failures",
    "prepare_images",
    "resolve_options",
    "targets",
]
