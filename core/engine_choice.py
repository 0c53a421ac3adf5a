"""``engine="auto"`` by measurement: the engine and batch size of perturbation methods, chosen by
timing short probes once per (model, device, input shape, method, settings) and cached.

Definitions:
- **candidates**: the exact engines the adapter declares for a purpose (``ModelAdapter.engines``:
  ``"forward"`` for batched masked inputs, ``"occlusion"`` for boxed images), the adapter's own rule
  choice (``engine="auto"`` before this module existed) first. Approximate settings (a
  ``field_limit``, reduced precision) are never probed: the rule decides.
- **probe**: each candidate runs one input untimed (lazy initialisation), then is timed at
  ``PROBE_START`` inputs, then at the other sizes (``PROBE_BATCHES`` below the memory-derived
  batch size, and that size), smallest first, while the budget lasts; each timing spans at least
  ``MIN_SAMPLE_SECONDS`` (:func:`measure`). An engine not timed at the memory-derived size gets a
  prediction there from its per-call overhead and per-input cost (a line through its two largest
  timed batches). The scores are thrown away: the maps are always computed by the chosen
  engine, full run, so a probe never changes a value.
- **budget**: a size is timed only while probing is predicted to stay within
  ``max(PROBE_SECONDS, PROBE_FRACTION × estimated run)``, the estimate being the fastest seconds
  per input at ``PROBE_START`` × the call's inputs (an overestimate where batches amortise a
  per-call overhead). The first timing of each engine is always taken.
- **choice**: the (engine, batch size) of the fewest seconds per perturbed input. A user's
  ``batch_size`` is kept (only engines are compared).
- **rule** (deterministic, no timing): fewer than ``MIN_PROBE_INPUTS`` perturbed inputs, an
  estimated run under ``MIN_RUN_SECONDS``, or a rule with a reason of its own (a callable target, a
  model that cannot be exported or traced). ``engine_reason`` says which.

Each call records ``engine`` (the engine used), ``engine_reason`` and ``engine_probes``
(``{engine: {batch size: seconds per perturbed input}}``; empty when not timed) in ``exp.options``.

Cache: per process, always; on disk too when ``VEXPLAIN_ENGINE_CACHE`` names a JSON file (written
atomically, read with ``json``; a file that is not such a cache is ignored with a notice and
rewritten). The model's part of the key is ``ModelAdapter.engine_key()``: its architecture, not its
weight values, since timings depend on shapes, not values.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from .errors import OutputError, VexplainError
from .notices import warn
from .options import Option, choice

#: every engine name a perturbation method's ``engine`` option takes, per purpose; each adapter
#: declares the ones it runs (``ModelAdapter.engines``)
ENGINES: dict[str, tuple[str, ...]] = {
    "forward": ("auto", "onnx", "torch"),
    "occlusion": ("auto", "incremental", "onnx", "torch"),
}
#: batch sizes probed (those up to the memory-derived batch size, which is always probed too);
#: every engine is timed at PROBE_START first
PROBE_BATCHES, PROBE_START = (1, 8, 32, 64), 8
#: a probed batch is timed over at least MIN_SAMPLE_SECONDS, twice (the fastest counts) when that
#: took under REPEAT_BELOW_SECONDS (a machine shared with others makes single short samples noisy)
PROBE_REPEATS, MIN_SAMPLE_SECONDS, REPEAT_BELOW_SECONDS = 2, 0.02, 0.1
#: probing takes at most max(PROBE_SECONDS, PROBE_FRACTION × the estimated run)
PROBE_SECONDS, PROBE_FRACTION = 0.5, 0.05
#: below this many perturbed inputs per call, or an estimated run below MIN_RUN_SECONDS, the rule decides
MIN_PROBE_INPUTS, MIN_RUN_SECONDS = 256, 0.5
#: environment variable naming an on-disk JSON cache of choices
CACHE_VARIABLE = "VEXPLAIN_ENGINE_CACHE"
_CACHE_VERSION = 1

_LOCK = threading.RLock()
_CACHE: dict[str, dict[str, Any]] = {}


def engine_option(purpose: str, help: str) -> Option:
    """The ``engine`` option of a method whose perturbed inputs serve ``purpose`` ("forward" or
    "occlusion"): default "auto", one of ``ENGINES[purpose]``."""
    return Option("auto", choice(*ENGINES[purpose]), help)


@dataclass
class Choice:
    """An engine and batch size, and why: ``reason`` and ``probes`` (``{engine: {batch: seconds
    per perturbed input}}``) go into ``exp.options`` as ``engine_reason`` and ``engine_probes``."""

    engine: str
    batch_size: int
    reason: str
    probes: dict[str, dict[int, float]] = field(default_factory=dict)

    def notes(self) -> dict[str, Any]:
        return {"engine": self.engine, "engine_reason": self.reason, "engine_probes": {e: dict(b) for e, b in self.probes.items()}}


@dataclass
class Candidate:
    """An engine ready to run: ``run(batch)`` computes ``batch`` perturbed inputs' scores (thrown away)."""

    engine: str
    run: Callable[[int], Any]
    built: Any = None


def measure(engine: str, batch: int, run: Callable[[int], Any], device: torch.device) -> float:
    """Seconds per perturbed input of ``engine`` at ``batch``: ``run(batch)`` repeated until
    ``MIN_SAMPLE_SECONDS`` have passed; when that took under ``REPEAT_BELOW_SECONDS``, the fastest of
    two such samples (the first also warms up). A GPU is waited for. Tests replace this function
    to stub timings."""
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    best, samples = float("inf"), 0
    while samples == 0 or (samples < PROBE_REPEATS and best * batch < REPEAT_BELOW_SECONDS):
        synchronize()
        start, runs = time.perf_counter(), 0
        while runs == 0 or time.perf_counter() - start < MIN_SAMPLE_SECONDS:
            run(batch)
            synchronize()
            runs += 1
        best, samples = min(best, (time.perf_counter() - start) / (runs * batch)), samples + 1
    return best


def probe_batches(default: int, most: int, given: int | None) -> list[int]:
    """Batch sizes to probe, largest first: ``given`` alone when the user chose one; else the
    memory-derived ``default``; either capped at ``most`` (the inputs one call has: a larger batch
    never runs), the derived one followed by the smaller of ``PROBE_BATCHES``."""
    if given is not None:
        return [max(1, min(given, most))]
    top = max(1, min(default, most))
    return sorted({size for size in PROBE_BATCHES if size < top} | {top}, reverse=True)


def run_probes(candidates: Sequence[Candidate], sizes: Sequence[int], inputs: int, device: torch.device) -> tuple[Choice | None, list[str]]:
    """The fastest (engine, batch) per input among ``candidates`` at ``sizes`` (largest first, the
    first being the batch the rule would run), or None (with the line why) when the first
    candidate's run is estimated under ``MIN_RUN_SECONDS``.

    Every candidate runs one input untimed (lazy initialisation), then is timed at
    ``min(PROBE_START, sizes[0])``; the other sizes follow, smallest first, each engine's only while
    the budget is predicted to last. An engine not timed at ``sizes[0]`` but at two sizes gets a
    prediction there from a line through its last two per-call times (per-call overhead + per-input
    cost), so an engine whose batches amortise a large overhead is not judged by its small ones."""
    top = sizes[0]
    start = top if len(sizes) == 1 else min(PROBE_START, top)
    probes: dict[str, dict[int, float]] = {}
    started = time.perf_counter()
    for candidate in candidates:
        candidate.run(1)
        probes[candidate.engine] = {start: measure(candidate.engine, start, candidate.run, device)}
        if len(probes) == 1:
            estimate = probes[candidate.engine][start] * inputs
            if estimate < MIN_RUN_SECONDS:
                return None, [f"estimated run {estimate:.2g} s, under {MIN_RUN_SECONDS} s: not worth probing"]
    budget = max(PROBE_SECONDS, PROBE_FRACTION * min(t[start] for t in probes.values()) * inputs)
    skipped: dict[int, int] = {}
    for size in sorted(s for s in sizes if s != start):
        for candidate in candidates:
            timings = probes[candidate.engine]
            cost = max(MIN_SAMPLE_SECONDS, size * timings[max(timings)])
            if time.perf_counter() - started + cost > budget:
                skipped[size] = skipped.get(size, 0) + 1
                continue
            timings[size] = measure(candidate.engine, size, candidate.run, device)
    why = [f"probe budget {budget:.2g} s: batch {', '.join(map(str, sorted(skipped, reverse=True)))} not timed on {max(skipped.values())} engine(s)"] if skipped else []
    options = []
    for engine, timings in probes.items():
        at_top, how = _at_top(timings, top)
        options.append((at_top, engine, top, how))
        if how != "bound":  # a smaller batch is chosen only when it beat this engine's own (timed or predicted) batch top
            options += [(t, engine, size, "") for size, t in timings.items() if size != top]
    seconds, engine, size, how = min(options)
    if how == "predicted":
        why.append(f"{engine} at batch {top}: {seconds * 1e3:.3g} ms per input predicted from batches {', '.join(map(str, sorted(probes[engine])))}")
    elif how == "bound":
        why.append(f"{engine} timed at batch {min(probes[engine])} only, run at batch {top}")
    return Choice(engine, size, "", probes), why


def _at_top(timings: dict[int, float], top: int) -> tuple[float, str]:
    """An engine's seconds per input at batch ``top`` and how they are known: "timed"; "predicted"
    by a line (per-call overhead + per-input cost) through its two largest timed batches; or, with
    one smaller batch timed, that timing as a "bound" (larger batches amortise more)."""
    if top in timings:
        return timings[top], "timed"
    if len(timings) >= 2:
        small, large = sorted(timings)[-2:]
        per_input = (timings[large] * large - timings[small] * small) / (large - small)
        overhead = max(0.0, timings[large] * large - per_input * large)
        if per_input > 0:
            return min(timings[large], per_input + overhead / top), "predicted"
        return timings[large], "bound"
    return next(iter(timings.values())), "bound"


def choose(
    key: dict[str, Any], build_rule: Callable[[], tuple[Candidate, str | None, str | None]], others: Callable[[str], Candidate],
    engines: Sequence[str], sizes: Sequence[int], inputs: int, device: torch.device, default_batch: int,
) -> tuple[Choice, Candidate | None]:
    """The engine and batch size for one call, and the built candidate of that engine when one was
    built here (None: the caller builds it). ``key``: what the choice depends on (``cache_key``),
    looked up first; ``build_rule()``: the adapter's own ``auto`` choice, built, with the reason it
    had to take it (a callable target, a model it cannot export or trace: then nothing is timed)
    and its note on why it picked it (quoted when the rule decides); ``others(engine)`` builds
    another candidate (a ``VexplainError`` leaves it out, named); ``engines``: the adapter's
    declared engines; ``sizes``: batch sizes to probe, largest first; ``inputs``: perturbed inputs
    in the call."""
    text = json.dumps(key, sort_keys=True, default=str)
    cached = _lookup(text)
    if cached is not None and cached["engine"] in engines:
        probes = {e: {int(s): t for s, t in b.items()} for e, b in cached["probes"].items()}
        return Choice(cached["engine"], int(cached["batch_size"]), f"cached probe: {cached['reason']}", probes), None
    rule, forced, note = build_rule()
    rule_batch = sizes[0] if len(sizes) == 1 else default_batch
    if forced is not None:
        return Choice(rule.engine, rule_batch, f"rule: {forced}"), rule
    ruled = f"rule ({rule.engine}{': ' + note if note else ''})"
    if inputs < MIN_PROBE_INPUTS:
        return Choice(rule.engine, rule_batch, f"{ruled}: {inputs} perturbed inputs, under {MIN_PROBE_INPUTS}: not timed"), rule
    candidates, left_out = [rule], []
    for engine in sorted(engines, key=lambda name: name == "onnx"):  # ONNX Runtime's spinning threads would slow what runs after it
        if engine in ("auto", rule.engine):
            continue
        try:
            candidates.append(others(engine))
        except VexplainError as error:
            left_out.append(f"{engine} not possible ({str(error).splitlines()[0]})")
    picked, why = run_probes(candidates, sizes, inputs, device)
    if picked is None:
        return Choice(rule.engine, rule_batch, f"{ruled}: {why[0]}"), rule
    timings = ", ".join(f"{e} {min(t.values()) * 1e3:.3g} ms" for e, t in picked.probes.items())
    picked.reason = "; ".join([f"probe: fastest per perturbed input of {timings} (batch {picked.batch_size})", *why, *left_out])
    _store(text, picked)
    return picked, next(c for c in candidates if c.engine == picked.engine)


def cache_key(adapter: Any, purpose: str, method: str, shape: Sequence[int], settings: dict[str, Any]) -> dict[str, Any]:
    """What a choice depends on: the model (``adapter.engine_key()``), device, thread count and
    library versions, the purpose, method, one input's shape and the settings that change the work."""
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    return {
        "model": adapter.engine_key(), "device": str(adapter.device), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "onnxruntime": ort_version, "purpose": purpose, "method": method,
        "shape": [int(d) for d in shape], "settings": settings,
    }


def structure_key(module: torch.nn.Module) -> str:
    """A fingerprint of a module's architecture: every submodule's name, class and settings
    (``extra_repr``) and every parameter's and buffer's name, shape and dtype; not their values."""
    digest = hashlib.sha256()
    for name, sub in module.named_modules():
        digest.update(f"{name}:{type(sub).__qualname__}:{sub.extra_repr() if hasattr(sub, 'extra_repr') else ''};".encode())
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
    return digest.hexdigest()[:32]


def cached_choice(adapter: Any, purpose: str, method: str, shape: Sequence[int], settings: dict[str, Any]) -> dict[str, Any] | None:
    """The choice an earlier call made for this key (``engine``, ``batch_size``, ``reason``,
    ``probes``), or None: for callers that pin it, e.g. a data-set run handing it to other processes."""
    return _lookup(json.dumps(cache_key(adapter, purpose, method, shape, settings), sort_keys=True, default=str))


def pinned(options: dict[str, Any], recorded: dict[str, Any]) -> dict[str, Any]:
    """``options`` with ``engine`` and ``batch_size`` fixed to those an explanation recorded
    (``exp.options``) when ``options`` left them to "auto" / derived: for a data-set run, so every
    later batch, shard and worker process runs the first batch's choice (bit-identical rows
    whichever worker explains an image). Options that chose themselves are kept."""
    out = dict(options)
    if out.get("engine", "auto") == "auto" and "engine" in recorded and "engine_reason" in recorded:
        out["engine"] = recorded["engine"]
        if out.get("batch_size") is None and "batch_size" in recorded:
            out["batch_size"] = recorded["batch_size"]
    return out


def clear_cache() -> None:
    """Forget the per-process choices (the on-disk cache is left as it is)."""
    with _LOCK:
        _CACHE.clear()


def _lookup(text: str) -> dict[str, Any] | None:
    with _LOCK:
        if text in _CACHE:
            return _CACHE[text]
        path = os.environ.get(CACHE_VARIABLE)
        if path:
            entry = _read_disk(Path(path)).get(text)
            if entry is not None:
                _CACHE[text] = entry
            return entry
        return None


def _store(text: str, picked: Choice) -> None:
    entry = {"engine": picked.engine, "batch_size": picked.batch_size, "reason": picked.reason,
             "probes": {e: {str(s): t for s, t in b.items()} for e, b in picked.probes.items()}}
    with _LOCK:
        _CACHE[text] = entry
        path = os.environ.get(CACHE_VARIABLE)
        if not path:
            return
        from .output_files import write_text

        entries = _read_disk(Path(path))
        entries[text] = entry
        try:
            write_text(path, json.dumps({"vexplain_engine_cache": _CACHE_VERSION, "entries": entries}, indent=1, sort_keys=True))
        except OutputError as error:
            warn(f"engine cache not written: {error}")


def _read_disk(path: Path) -> dict[str, Any]:
    """The entries of the JSON cache at ``path`` ({} when missing; ignored, with a notice, when it is
    not a cache this version wrote)."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["entries"] if isinstance(data, dict) and data.get("vexplain_engine_cache") == _CACHE_VERSION else None
        if not isinstance(entries, dict) or not all(_valid(e) for e in entries.values()):
            raise ValueError("not a vexplain engine cache of this version")
        return dict(entries)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        warn(f"engine cache {path} ignored ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'unreadable'}); engines are probed again and the file rewritten")
        return {}


def _valid(entry: Any) -> bool:
    return (
        isinstance(entry, dict) and isinstance(entry.get("engine"), str) and isinstance(entry.get("batch_size"), int)
        and entry["batch_size"] >= 1 and isinstance(entry.get("reason"), str) and isinstance(entry.get("probes"), dict)
        and all(isinstance(b, dict) and all(isinstance(t, (int, float)) for t in b.values()) for b in entry["probes"].values())
    )


@contextmanager
def errors_about_all(adapter: Any, inputs: torch.Tensor) -> Iterator[None]:
    """Probes run on copies of one image; a typed error one raises (an output class-index targets
    cannot use, say) is raised again by a forward pass of all ``inputs`` when that fails too, so
    its message shows the caller's batch rather than the probe's."""
    try:
        yield
    except VexplainError:
        if len(inputs) > 1:
            adapter.forward(inputs)
        raise


def auto_scorer(adapter: Any, method: str, inputs: torch.Tensor, options: dict[str, Any], perturbed: int, per_call: int) -> tuple[Any, int, dict[str, Any]]:
    """``(scorer, batch_size, notes)`` for a method that runs ``perturbed`` masked inputs in all
    (at most ``per_call`` in one batch) through ``adapter.scorer``: the engine of
    ``options["engine"]`` (chosen as the module notes say when "auto") and the batch size
    (``options["batch_size"]``, else the probed one, else the one derived from ``memory_mb``).
    ``notes`` (``engine_reason``, ``engine_probes``) are empty unless the engine was "auto"."""
    from .perturbation import derived_batch_size

    default = derived_batch_size(options, inputs.shape[1:])
    sample = inputs[:1]
    if options.get("engine", "auto") != "auto":
        return adapter.scorer(options["engine"], sample=sample), default, {}
    given = options.get("batch_size")
    fixed = getattr(adapter, "fixed_batch", None)
    sizes = [default] if fixed else probe_batches(default, per_call, given)
    batch = sample.expand(sizes[0], *sample.shape[1:]).contiguous()

    def candidate(scorer: Any) -> Candidate:
        return Candidate(scorer.engine, lambda size: scorer.run(batch[:size]), scorer)

    def build_rule() -> tuple[Candidate, str | None, str | None]:
        rule = adapter.scorer("auto", sample=sample)
        return candidate(rule), rule.notes.get("engine_reason") or rule.notes.get("engine_fallback"), None

    key = cache_key(adapter, "forward", method, inputs.shape[1:], {"batch_size": given, "default_batch": default})
    with errors_about_all(adapter, inputs):
        picked, built = choose(
            key, build_rule, lambda engine: candidate(adapter.scorer(engine, sample=sample)), adapter.engines("forward"),
            sizes, perturbed, adapter.device, default,
        )
    scorer = built.built if built is not None else adapter.scorer(picked.engine, sample=sample)
    return scorer, (given or picked.batch_size), picked.notes()


def auto_box_engine(
    adapter: Any, method: str, images: torch.Tensor, window: tuple[int, int], stride: tuple[int, int], options: dict[str, Any],
    tops: torch.Tensor, lefts: torch.Tensor, default_batch: int,
) -> tuple[str, int, dict[str, Any]]:
    """``(engine, batch_size, notes)`` for occlusion of ``images`` with windows at ``tops``/``lefts``
    (CPU): ``options["engine"]`` unless it is "auto" with exact settings; then probed as the module
    notes say, on boxed copies of the first image at windows spread over the grid. ``engine`` is
    what to pass to ``adapter.box_scorers`` ("auto" when the adapter's own rule won, so its notes
    stay as they are)."""
    given = options.get("batch_size")
    approximate = options.get("field_limit") is not None or options.get("precision", "fp32") != "fp32"
    if options["engine"] != "auto" or approximate:
        notes = {"engine_reason": "rule: approximate settings (field_limit, precision) are not probed"} if options["engine"] == "auto" else {}
        return options["engine"], default_batch, notes
    first = images[:1]
    baseline = options["baseline"]

    def candidate(engine: str) -> Candidate:
        scorer = adapter.box_scorers(first, window, baseline, engine, None, "fp32")[0]

        def run(size: int) -> Any:
            picks = ((torch.arange(size) + 0.5) * len(tops) / size).long()
            return scorer.run(tops[picks], lefts[picks])

        return Candidate(scorer.engine, run, scorer)

    rules: list[Candidate] = []

    def build_rule() -> tuple[Candidate, str | None, str | None]:
        rules.append(candidate("auto"))
        return rules[0], rules[0].built.notes.get("engine_fallback"), rules[0].built.notes.get("engine_reason")

    sizes = probe_batches(default_batch, len(tops), given)
    settings = {"window": list(window), "stride": list(stride), "batch_size": given, "default_batch": default_batch}
    key = cache_key(adapter, "occlusion", method, images.shape[1:], settings)
    with errors_about_all(adapter, images):
        picked, built = choose(key, build_rule, candidate, adapter.engines("occlusion"), sizes, len(tops) * len(images), adapter.device, default_batch)
    notes = picked.notes()
    notes.pop("engine")
    rule_won = bool(rules) and built is rules[0]
    return ("auto" if rule_won else picked.engine), (given or picked.batch_size), notes
