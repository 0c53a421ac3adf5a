"""Data-set throughput: the local engine vs a plain loop of vx.explain calls, Ray vs local at equal
cores, one Ray actor's throughput, and peak memory against the data set's size.

    python benchmarks/bench_datasets.py --images 200 --method gradcam [--ray] [--memory 100,2000]

Every run writes the demo scenes as PNG files first, so decoding is part of what is timed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from datasets_support import MODEL, WEIGHTS, write_scenes  # noqa: E402


def plain_loop(folder: Path, method: str) -> float:
    """images/s of load_image → preprocess → vx.explain, one image per call (what users write)."""
    import vexplain as vx
    from vexplain.cli.model_loading import load_model
    from vexplain.core.images import load_image, preprocess

    adapter = load_model(MODEL, WEIGHTS)
    meta = adapter.metadata
    paths = sorted(folder.rglob("*.png"))
    started = time.perf_counter()
    for path in paths:
        vx.explain(adapter, preprocess(load_image(path), meta["input_size"], meta["mean"], meta["std"])[None], method=method)
    return len(paths) / (time.perf_counter() - started)


def engine(folder: Path, out: Path, method: str, name: str, **extra) -> float:
    import vexplain as vx

    run = vx.explain_dataset(MODEL, folder, method=method, weights=WEIGHTS, out=out, engine=name, overwrite=True, **extra)
    return run.images_per_second


def peak_memory_mb(count: int, method: str) -> float:
    """Peak resident memory (MB) of a fresh process running the local engine on ``count`` images."""
    code = (
        "import sys, resource; sys.path.insert(0, %r); import vexplain as vx, tempfile, pathlib;"
        "from datasets_support import write_scenes, MODEL, WEIGHTS;"
        "d = pathlib.Path(tempfile.mkdtemp()); write_scenes(d / 's', %d, by_class=False);"
        "vx.explain_dataset(MODEL, d / 's', method=%r, weights=WEIGHTS, out=d / 'o');"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    ) % (str(HERE.parent / "tests"), count, method)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--method", default="gradcam")
    parser.add_argument("--ray", action="store_true", help="also time engine='ray' (local Ray, one actor per CPU) and one actor alone")
    parser.add_argument("--memory", default="", help="comma-separated image counts for the peak-memory runs, e.g. 100,2000")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results: dict = {"images": args.images, "method": args.method, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "scenes"
        write_scenes(folder, args.images)
        engine(folder, Path(tmp) / "warm", args.method, "local")  # plugins, first-call costs
        results["plain_loop_images_per_s"] = plain_loop(folder, args.method)
        results["local_images_per_s"] = engine(folder, Path(tmp) / "local", args.method, "local")
        results["local_speedup"] = results["local_images_per_s"] / results["plain_loop_images_per_s"]
        if args.ray:
            import ray

            os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
            try:
                engine(folder, Path(tmp) / "ray-warm", args.method, "ray", shard_size=16)
                results["ray_images_per_s"] = engine(folder, Path(tmp) / "ray", args.method, "ray", shard_size=16)
                results["ray_overhead"] = results["local_images_per_s"] / results["ray_images_per_s"]
                results["ray_one_actor_images_per_s"] = engine(folder, Path(tmp) / "ray1", args.method, "ray", shard_size=16, num_actors=1)
            finally:
                ray.shutdown()
    for count in [int(c) for c in args.memory.split(",") if c]:
        results[f"peak_rss_mb_{count}"] = peak_memory_mb(count, args.method)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
