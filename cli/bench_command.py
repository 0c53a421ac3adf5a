"""``vexplain bench``: how fast every method runs on a model, beside Captum and pytorch-grad-cam."""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Any

import torch

from vexplain import explain, methods as registered_methods
from vexplain.display import markdown_table
from vexplain.errors import InvalidOption, one_line
from vexplain.files import output_folder, write_text
from vexplain.options import declared_options
from vexplain.progress import progress, progress_bars

from .bench_measure import measure
from .bench_references import LIBRARIES, available, reference_calls
from .evaluate_run import select
from .model_loading import add_random_weights_argument, load_model


def add_parser(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "bench",
        help="time every method on a model (and Captum / pytorch-grad-cam where importable)",
        description=(
            "Time each method at each batch size: median seconds per call after a warm-up, time per image, images/s "
            "and peak extra memory; beside it the same method in Captum and pytorch-grad-cam when importable, timed "
            "in the same run on the same inputs, with the ratio reference / vexplain (> 1: vexplain is faster). "
            "Default model: the shipped demo CNN on generated scenes."
        ),
    )
    parser.add_argument("--model", help="a .onnx file, a TorchScript file, or pkg.module:factory with --weights (default: the shipped demo model)")
    parser.add_argument("--weights", "-w", help="state_dict file for a pkg.module:factory MODEL")
    add_random_weights_argument(parser)
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="input size for --model (default: metadata, else 224 224)")
    parser.add_argument("--methods", help="comma-separated methods (default: every registered method the model supports)")
    parser.add_argument("--batches", default="1,16", help="comma-separated batch sizes (default 1,16)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement, median reported (default 3)")
    parser.add_argument("--no-references", action="store_true", help="skip the Captum / pytorch-grad-cam columns")
    parser.add_argument("--out", "-o", default="vexplain-bench", help="output folder for bench.json (default vexplain-bench)")
    parser.set_defaults(run=run)


def _inputs(args: argparse.Namespace, adapter: Any, count: int) -> torch.Tensor:
    if args.model is None:
        from vexplain.demo.model import preprocess
        from vexplain.demo.scenes import generate_dataset

        images, _, _ = generate_dataset(count, seed=7)
        return torch.from_numpy(preprocess(images)).to(adapter.device)
    size = args.size or adapter.metadata.get("input_size") or (224, 224)
    generator = torch.Generator().manual_seed(1)
    return torch.randn((count, adapter.input_channels or 3, *size), generator=generator).to(adapter.device)


def _batches(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise InvalidOption(f"--batches takes comma-separated positive ints (e.g. 1,16); got {text!r}")
    return sizes


def run(args: argparse.Namespace) -> int:
    if args.repeats < 1:
        raise InvalidOption(f"--repeats must be at least 1; got {args.repeats}")
    batches = _batches(args.batches)
    if args.model is None:
        from vexplain.demo.model import demo_adapter

        adapter, model_name = demo_adapter(), "shipped demo CNN"
    else:
        adapter, model_name = load_model(args.model, args.weights, random_weights=args.random_weights), args.model
    methods = select(args.methods, [m.name for m in registered_methods(supported_by=adapter)], "methods")
    all_inputs = _inputs(args, adapter, max(batches))
    module = getattr(adapter, "model", None)
    use_references = not args.no_references and isinstance(module, torch.nn.Module) and not isinstance(module, torch.jit.ScriptModule)
    columns = [c for c, (library, _, _) in LIBRARIES.items() if use_references and available(library)]
    results = []
    steps = [(m, b) for m in methods for b in batches]
    with progress_bars(sys.stderr.isatty()):
        for method, batch in progress(steps, total=len(steps), description="bench"):
            results.append(_bench_one(adapter, module if use_references else None, method, all_inputs[:batch], args.repeats))
    _print_table(results, columns)
    out = output_folder(args.out)
    document = {"model": model_name, "device": str(adapter.device), "threads": torch.get_num_threads(), "repeats": args.repeats, "references": columns, "results": results}
    write_text(out / "bench.json", json.dumps(document, indent=1))
    print(f"wrote {out / 'bench.json'}", file=sys.stderr)
    return 0


def _bench_one(adapter: Any, module: torch.nn.Module | None, method: str, inputs: torch.Tensor, repeats: int) -> dict[str, Any]:
    batch = len(inputs)
    row: dict[str, Any] = {"method": method, "batch": batch}
    try:
        exp = explain(adapter, inputs, method=method)
        timing = measure(lambda: explain(adapter, inputs, method=method), adapter.device, repeats, warmup=0)
    except Exception as error:  # reported in the table: one unfinished plugin must not sink the run
        row["error"] = one_line(error)
        return row
    row.update(seconds=timing.seconds, per_image=timing.seconds / batch, images_per_s=batch / timing.seconds, peak_mb=timing.peak_mb, runs=timing.runs)
    if module is None:
        return row
    used = declared_options(method, exp.options)
    try:
        layer = module.get_submodule(exp.options["layer"]) if isinstance(exp.options.get("layer"), str) else None
        calls = reference_calls(method, module, layer, inputs, [int(t) for t in exp.targets], used)
    except Exception as error:  # a reference library that cannot even be set up is one failed cell
        row["references"] = {"error": one_line(error)}
        return row
    for column, call in calls.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # Captum's notes on requires_grad and hooks
                reference = measure(call, adapter.device, repeats)
        except Exception as error:  # a reference library failing is reported, not fatal
            row[column] = {"error": one_line(error)}
            continue
        row[column] = {"seconds": reference.seconds, "per_image": reference.seconds / batch, "peak_mb": reference.peak_mb, "ratio": reference.seconds / timing.seconds}
    return row


def _print_table(results: list[dict[str, Any]], columns: list[str]) -> None:
    header = ["method", "batch", "ms/image", "images/s", "peak MB", *(f"{c} ms/image" for c in columns), *(f"{c} / vexplain" for c in columns)]
    rows = []
    for row in results:
        if "error" in row:
            rows.append([row["method"], str(row["batch"]), f"failed: {row['error'][:80]}", *[""] * (len(header) - 3)])
            continue
        peak = "-" if row["peak_mb"] is None else f"{row['peak_mb']:.0f}"
        cells = [row["method"], str(row["batch"]), f"{row['per_image'] * 1e3:.2f}", f"{row['images_per_s']:.1f}", peak]
        refs = [row.get(c) for c in columns]
        cells += ["-" if r is None else ("failed" if "error" in r else f"{r['per_image'] * 1e3:.2f}") for r in refs]
        cells += ["-" if r is None or "error" in r else f"{r['ratio']:.2f}×" for r in refs]
        rows.append(cells)
    print(markdown_table(header, rows))
