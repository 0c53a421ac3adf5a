"""Files vexplain writes and reads, safely.

Writing: ``output_folder(path)`` creates (or accepts) an output folder; ``write_bytes``,
``write_text``, ``write_png`` (uint8 RGB) and ``write_npy`` write to a temporary file in the
destination folder and rename it over the name, so a symlink at the name is replaced rather than
followed, a reader never sees half a file, and a failed write is an ``OutputError``.
Reading: ``read_json_file(path, what, max_bytes, error)`` refuses files over ``max_bytes`` and
malformed JSON with ``error`` (one line); ``json_depth(value)`` is the nesting depth of parsed
JSON; ``read_metadata_file(path)`` reads and checks a model's metadata sidecar (``input_size``,
``mean``, ``std``, ``class_names``).
"""
from vexplain.core.model_metadata import json_depth, read_json_file, read_metadata_file
from vexplain.core.output_files import output_folder, write_bytes, write_npy, write_png, write_text

__all__ = ["json_depth", "output_folder", "read_json_file", "read_metadata_file", "write_bytes", "write_npy", "write_png", "write_text"]
