"""The output folder: Parquet shards plus the manifest that makes a run resumable, exactly once.

Layout of ``out/``::

    part-00000.parquet ...   one file per completed shard (rows: image x method)
    _vexplain_run.json       the manifest: the run's spec and every committed shard's images
    _summary.json            runs with metrics: mean and std per method x metric value
    _overlays/               optional PNGs, <image name>.<method>.png (the "_" keeps readers out)

A shard is committed in two atomic steps: its file is written to a hidden temporary name and
``os.replace``d into place, then the manifest (also temp + ``os.replace``) lists it. A run killed
between the two leaves a shard file the manifest does not list; opening the folder again deletes
such files and hidden temporaries, and their images are done again, so no image is ever in two
files and a kill loses only the shards in flight. ``pyarrow.parquet.read_table(out)`` skips names
starting with ``_`` or ``.``; readers see only ``part-*.parquet``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from vexplain.core.errors import InvalidInput, InvalidOption

MANIFEST = "_vexplain_run.json"
SUMMARY = "_summary.json"  # written by datasets.metrics.summarize after a run with metrics
FORMAT = 1
_PART = re.compile(r"^part-(\d{5,})\.parquet$")


class ShardStore:
    """Opens ``out`` for a run described by ``spec`` (a JSON-able dict of everything that changes
    results: model fingerprint, methods, options, targets, preprocessing).

    A folder holding a manifest with another spec is refused with ``InvalidOption`` naming what
    changed, unless ``overwrite`` (then its shards, overlays and manifest are deleted first).
    """

    def __init__(self, out: str | os.PathLike, spec: dict[str, Any], overwrite: bool = False):
        self.out = Path(out)
        self.spec = json.loads(json.dumps(spec, sort_keys=True))
        if self.out.exists() and not self.out.is_dir():
            raise InvalidInput(f"out {self.out} is a file; give a folder for the Parquet dataset")
        self.out.mkdir(parents=True, exist_ok=True)
        manifest = self._read()
        if manifest is not None and manifest.get("spec") != self.spec:
            if not overwrite:
                changed = sorted(k for k in set(self.spec) | set(manifest.get("spec", {})) if self.spec.get(k) != manifest.get("spec", {}).get(k))
                raise InvalidOption(
                    f"{self.out} holds a run with other {', '.join(changed)}; use another out folder, or overwrite=True (--overwrite) to start again"
                )
            manifest = None
        if manifest is None:
            self._clear()
            manifest = {"format": FORMAT, "spec": self.spec, "shards": {}}
            self._write_manifest(manifest)
        self.shards: dict[str, dict[str, Any]] = manifest["shards"]
        self._remove_uncommitted()

    @property
    def done(self) -> set[str]:
        """Names of the images in committed shards."""
        return {image for shard in self.shards.values() for image in shard["images"]}

    def next_index(self) -> int:
        """The number of the next shard file (after every committed one)."""
        numbers = [int(_PART.match(name).group(1)) for name in self.shards]  # type: ignore[union-attr]
        return max(numbers, default=-1) + 1

    def commit(self, index: int, table: Any, images: list[str]) -> Path:
        """Write ``table`` (a ``pyarrow.Table``) as shard ``index`` holding ``images``, atomically,
        then list it in the manifest. An image already committed is refused (never written twice)."""
        import pyarrow.parquet as pq

        name = f"part-{index:05d}.parquet"
        if name in self.shards:
            raise InvalidInput(f"shard {name} is already committed in {self.out}")
        again = self.done.intersection(images)
        if again:
            raise InvalidInput(f"images already written in {self.out}: {', '.join(sorted(again)[:3])}")
        final = self.out / name
        temporary = self.out / f".{name}.tmp"
        pq.write_table(table, temporary)
        _fsync(temporary)
        os.replace(temporary, final)
        self.shards[name] = {"images": list(images), "rows": table.num_rows}
        self._write_manifest({"format": FORMAT, "spec": self.spec, "shards": self.shards})
        return final

    def overlay_path(self, image: str, method: str) -> Path:
        """``out/_overlays/<image name>.<method>.png`` (folders of the image name kept)."""
        return self.out / "_overlays" / f"{image}.{method}.png"

    def _read(self) -> dict[str, Any] | None:
        path = self.out / MANIFEST
        if not path.is_file():
            return None
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise InvalidInput(f"cannot read {path}: {error}; delete the folder or use overwrite=True") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("shards"), dict):
            raise InvalidInput(f"{path} is not a vexplain run manifest (format {FORMAT}); use another out folder or overwrite=True")
        return manifest

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        path = self.out / MANIFEST
        temporary = self.out / f".{MANIFEST}.tmp"
        temporary.write_text(json.dumps(manifest, sort_keys=True), encoding="utf-8")
        _fsync(temporary)
        os.replace(temporary, path)

    def _clear(self) -> None:
        for path in self.out.iterdir():
            if _PART.match(path.name) or path.name in (MANIFEST, SUMMARY) or path.name.endswith(".tmp"):
                path.unlink()
        if (self.out / "_overlays").is_dir():
            shutil.rmtree(self.out / "_overlays")

    def _remove_uncommitted(self) -> None:
        for path in self.out.iterdir():
            uncommitted = _PART.match(path.name) and path.name not in self.shards
            if uncommitted or (path.name.startswith(".") and path.name.endswith(".tmp")):
                path.unlink()


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
