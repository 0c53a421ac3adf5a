"""Data-set throughput: the local engine vs a plain loop of vx.explain calls, Ray vs local at equal
cores, one Ray actor's throughput, and peak memory against the data set's size.

    python benchmarks/bench_datasets.py --images 200 --method gradcam [--ray] [--memory 100,2000]

Every run writes the demo scenes as PNG files first, so decoding is part of what is timed. Each
engine run reports its overall images/s, its start-up (seconds until the first shard is
committed: for Ray, the actors' process start, imports and model build) and its steady state
(images/s between the first and the last commit), timed at the driver's shard commits.
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
    """Overall images/s of one run."""
    import vexplain as vx

    return vx.explain_dataset(MODEL, folder, method=method, weights=WEIGHTS, out=out, engine=name, overwrite=True, **extra).images_per_second


def timed_engine(small: Path, folder: Path, out: Path, method: str, name: str, **extra) -> dict[str, float]:
    """A run on ``folder`` and one on ``small`` (one shard of its images): overall images/s of
    the full run, start-up s (the one-shard run's wall time: for Ray, actor processes, imports and
    model builds, plus one shard's work) and steady-state images/s, the extra images of the full
    run over its extra time (start-up cancels; shard commits cannot be used for Ray, whose
    results reach the driver in bursts)."""
    import vexplain as vx

    def seconds(source: Path, target: Path) -> tuple[float, int]:
        started = time.perf_counter()
        run = vx.explain_dataset(MODEL, source, method=method, weights=WEIGHTS, out=target, engine=name, overwrite=True, **extra)
        return time.perf_counter() - started, run.images

    short, few = seconds(small, out.with_name(out.name + "-small"))
    full, many = seconds(folder, out)
    return {"images_per_s": many / full, "startup_s": short, "steady_images_per_s": (many - few) / (full - short) if full > short else float("nan")}


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
    parser.add_argument("--shard-size", type=int, default=16, help="images per shard, the unit of one actor call (default 16)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads in this process (the plain loop and the local engine; Ray actors use one each)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    results: dict = {"images": args.images, "method": args.method, "cpus": os.cpu_count(), "shard_size": args.shard_size, "torch_threads": args.threads or "default"}
    with tempfile.TemporaryDirectory() as tmp:
        folder, small = Path(tmp) / "scenes", Path(tmp) / "one-shard"
        write_scenes(folder, args.images)
        write_scenes(small, args.shard_size)
        engine(folder, Path(tmp) / "warm", args.method, "local", shard_size=args.shard_size)  # plugins, first-call costs
        results["plain_loop_images_per_s"] = plain_loop(folder, args.method)
        local = timed_engine(small, folder, Path(tmp) / "local", args.method, "local", shard_size=args.shard_size)
        results["local_images_per_s"] = local["images_per_s"]
        results["local_startup_s"] = local["startup_s"]
        results["local_steady_images_per_s"] = local["steady_images_per_s"]
        results["local_speedup"] = results["local_images_per_s"] / results["plain_loop_images_per_s"]
        if args.ray:
            import ray

            os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
            try:
                engine(folder, Path(tmp) / "ray-warm", args.method, "ray", shard_size=args.shard_size)
                for actors in (2, 1):
                    timed = timed_engine(small, folder, Path(tmp) / f"ray{actors}", args.method, "ray", shard_size=args.shard_size, num_actors=actors)
                    for key, value in timed.items():
                        results[f"ray_{actors}_actors_{key}"] = value
                results["ray_overhead_overall"] = results["local_images_per_s"] / results["ray_2_actors_images_per_s"]
                results["ray_overhead_steady"] = results["local_steady_images_per_s"] / results["ray_2_actors_steady_images_per_s"]
                results["ray_actor_scaling_2_vs_1"] = results["ray_2_actors_steady_images_per_s"] / results["ray_1_actors_steady_images_per_s"]
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
