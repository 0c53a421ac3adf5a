"""Data sets at scale: ``explain_dataset`` streams a folder, manifest or list of images through
one or more methods into a resumable, exactly-once Parquet dataset, in one process (the local
engine) or on Ray Data (``engine="ray"``, the ``ray`` extra)."""
from .api import DatasetRun, evaluate_dataset, explain_dataset
from .pipeline import map_of, schema

__all__ = ["DatasetRun", "evaluate_dataset", "explain_dataset", "map_of", "schema"]
