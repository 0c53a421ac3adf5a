"""Thread safety (core/concurrency.py): concurrent calls on one model give exactly the
single-threaded results and leave the model as it was; calls on different models run in
parallel; an fx trace or an ONNX export in one thread never reaches another thread's model."""
from __future__ import annotations

import hashlib
import threading
import time
from typing import Any, Callable

import numpy as np
import pytest
import torch
from torch import nn

import vexplain as vx
from models import hook_counts, images, onnx_bytes, seeded_cnn, train_flag_cnn
from vexplain.core.concurrency import ReadersWriterLock

#: how long a test waits for another thread before it calls the run a failure (never reached when it passes)
PATIENCE = 20.0

#: methods run concurrently on one PyTorch model: occlusion on the incremental engine (an fx trace),
#: Score-CAM on the auto engine (an ONNX export on the CPU)
TORCH_CASES: dict[str, dict[str, Any]] = {
    "gradcam": {},
    "saliency": {},
    "occlusion": {"window": 4, "stride": 4, "engine": "incremental"},
    "scorecam": {},
}
ENGINES = {"occlusion": "incremental", "scorecam": "onnx"}


def state_hash(model: nn.Module) -> str:
    """A digest of every parameter's and buffer's name, dtype, shape and values."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def training_flags(model: nn.Module) -> dict[str, bool]:
    return {name: module.training for name, module in model.named_modules()}


def run_threads(workers: list[Callable[[], None]]) -> list[BaseException]:
    """Runs each worker in its own thread (started together) and returns what they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(workers))

    def wrap(worker: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                start.wait(PATIENCE)
                worker()
            except BaseException as error:  # collected and re-raised by the test
                errors.append(error)

        return run

    threads = [threading.Thread(target=wrap(w), daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PATIENCE * 10)
    assert not any(t.is_alive() for t in threads), "a thread did not finish: deadlock?"
    return errors


def raise_first(errors: list[BaseException]) -> None:
    if errors:
        raise AssertionError(f"{len(errors)} thread(s) failed; first: {type(errors[0]).__name__}: {errors[0]}") from errors[0]


def assert_same_explanation(got: vx.Explanation, expected: vx.Explanation) -> None:
    """Bit for bit: maps, scores, targets, layer maps and the options that record engines."""
    np.testing.assert_array_equal(got.maps, expected.maps)
    np.testing.assert_array_equal(got.scores, expected.scores)
    np.testing.assert_array_equal(got.targets, expected.targets)
    if expected.layer_maps is not None:
        np.testing.assert_array_equal(got.layer_maps, expected.layer_maps)
    assert got.options.get("engine") == expected.options.get("engine")


def train_mode_model() -> nn.Module:
    """BatchNorm (with non-trivial running statistics) and Dropout, in train mode: a call that ran
    the model in train mode would change the results and the running statistics."""
    model = train_flag_cnn()
    model.train()
    model.features[1].eval()  # mixed flags: every module's own flag must come back
    return model


@pytest.fixture(scope="module")
def x():
    return images(2, size=16, seed=7)


def test_same_torch_model_from_four_threads_equals_single_threaded(x):
    reference_model = train_mode_model()
    expected = {name: vx.explain(reference_model, x, method=name, targets=[1, 2], **o) for name, o in TORCH_CASES.items()}
    for name, engine in ENGINES.items():
        assert expected[name].options["engine"] == engine, f"{name} did not run on {engine}"
    assert all(np.ptp(e.maps) > 0 for e in expected.values())  # no method gives a constant map here

    model = train_mode_model()  # fresh: its fx trace and ONNX export happen while other threads run it
    assert state_hash(model) == state_hash(reference_model)
    before_hash, before_flags = state_hash(model), training_flags(model)
    names = list(TORCH_CASES)

    def worker(offset: int) -> Callable[[], None]:
        def run() -> None:
            for round_ in range(10):
                for step in range(len(names)):  # every thread runs every method, each round in another order
                    name = names[(offset + round_ + step) % len(names)]
                    got = vx.explain(model, x, method=name, targets=[1, 2], **TORCH_CASES[name])
                    assert_same_explanation(got, expected[name])

        return run

    raise_first(run_threads([worker(i) for i in range(4)]))
    assert state_hash(model) == before_hash, "parameters or buffers (BatchNorm statistics?) changed"
    assert training_flags(model) == before_flags, "a module's training flag changed"
    assert hook_counts(model) == {}


def test_evaluate_concurrently_with_explain_on_the_same_model(x):
    """The randomization metric redraws the model's weights during the call; explain calls on the
    same model in other threads must not see them, and evaluate → explain nests on one lock."""
    reference_model = train_mode_model()
    expected_eval = vx.evaluate(reference_model, x, "saliency", metric="randomization", targets=[1, 2], layers=2)
    expected_deletion = vx.evaluate(reference_model, x, "gradcam", metric="deletion", targets=[1, 2], steps=4)
    expected_exp = vx.explain(reference_model, x, method="gradcam", targets=[1, 2])

    model = train_mode_model()
    before_hash, before_flags = state_hash(model), training_flags(model)

    def randomization() -> None:
        for _ in range(3):
            got = vx.evaluate(model, x, "saliency", metric="randomization", targets=[1, 2], layers=2)
            for key, value in expected_eval.values.items():
                np.testing.assert_array_equal(got.values[key], value)

    def deletion() -> None:
        for _ in range(3):
            got = vx.evaluate(model, x, "gradcam", metric="deletion", targets=[1, 2], steps=4)
            np.testing.assert_array_equal(got.score, expected_deletion.score)

    def explaining() -> None:
        for _ in range(6):
            assert_same_explanation(vx.explain(model, x, method="gradcam", targets=[1, 2]), expected_exp)

    raise_first(run_threads([randomization, deletion, explaining, explaining]))
    assert state_hash(model) == before_hash
    assert training_flags(model) == before_flags


class Drawing(nn.Module):
    """A linear layer whose ``reset_parameters`` draws twice from torch's global generator and
    records the draws. Between them it waits briefly for a partner's first draw, and before
    returning for the partner's second: unguarded, the two threads' seeding and draws interleave."""

    def __init__(self, events: dict[str, threading.Event], me: str, partner: str) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(-1.0, 1.0, 2 * 3 * 4 * 4).reshape(2, -1))
        self.events, self.me, self.partner = events, me, partner
        self.draws: list[tuple[float, float]] = []

    def reset_parameters(self) -> None:
        first = float(torch.rand(()))
        self.events[f"{self.me} first"].set()
        self.events[f"{self.partner} first"].wait(0.5)
        second = float(torch.rand(()))
        self.events[f"{self.me} second"].set()
        self.events[f"{self.partner} second"].wait(0.5)
        self.draws.append((first, second))
        self.weight.copy_(torch.full_like(self.weight, first))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(x, 1) @ self.weight.T


def drawing_events(already_set: bool = False) -> dict[str, threading.Event]:
    events = {f"{who} {draw}": threading.Event() for who in "ab" for draw in ("first", "second")}
    for event in events.values():
        if already_set:
            event.set()
    return events


def test_randomization_of_different_models_at_once_draws_as_single_threaded():
    """Re-initialisation seeds torch's global generator and draws from it; two threads doing it at
    once on two models (each with its own seed) must not interleave their draws."""
    x = images(1, size=4, seed=0)
    seeds = {"a": 0, "b": 7}
    expected = {}
    for name, seed in seeds.items():
        alone = Drawing(drawing_events(already_set=True), name, "b" if name == "a" else "a")  # never waits
        vx.evaluate(alone, x, "saliency", metric="randomization", targets=0, seed=seed)
        expected[name] = alone.draws
    assert expected["a"] != expected["b"]
    events = drawing_events()
    models = {"a": Drawing(events, "a", "b"), "b": Drawing(events, "b", "a")}

    def worker(name: str) -> Callable[[], None]:
        return lambda: vx.evaluate(models[name], x, "saliency", metric="randomization", targets=0, seed=seeds[name])

    raise_first(run_threads([worker("a"), worker("b")]))
    assert {name: m.draws for name, m in models.items()} == expected


ONNX_CASES: dict[str, dict[str, Any]] = {
    "occlusion": {"window": 4, "stride": 4},
    "cam": {},
    "scorecam": {},
    "ablationcam": {},
}


def test_onnx_model_from_four_threads_equals_single_threaded(x):
    data = onnx_bytes(seeded_cnn(seed=0), (3, 16, 16))
    expected = {name: vx.explain(vx.adapt(data), x, method=name, **o) for name, o in ONNX_CASES.items()}
    shared = vx.adapt(data)  # fresh: its per-layer sessions are built while the threads run
    assert shared.exclusive_keys == ()
    names = list(ONNX_CASES)

    def worker(offset: int) -> Callable[[], None]:
        def run() -> None:
            for round_ in range(5):
                for step in range(len(names)):
                    name = names[(offset + round_ + step) % len(names)]
                    got = vx.explain(shared, x, method=name, **ONNX_CASES[name])
                    assert got.options["backend"] == "onnx"
                    assert_same_explanation(got, expected[name])

        return run

    raise_first(run_threads([worker(i) for i in range(4)]))


class Rendezvous(nn.Module):
    """A linear model whose forward announces itself and waits for its partner's forward: it
    returns only when both run at the same time."""

    def __init__(self, mine: threading.Event, partner: threading.Event) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 4 * 4, 2)
        self.mine, self.partner = mine, partner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.mine.set()
        if not self.partner.wait(PATIENCE):
            raise RuntimeError("the other model's forward never ran alongside this one")
        return self.fc(torch.flatten(x, 1))


def test_different_models_run_in_parallel():
    a_in, b_in = threading.Event(), threading.Event()
    a, b = Rendezvous(a_in, b_in), Rendezvous(b_in, a_in)
    x = images(1, size=4, seed=0)
    results: dict[str, np.ndarray] = {}

    def explain(name: str, model: nn.Module) -> Callable[[], None]:
        def run() -> None:
            results[name] = vx.explain(model, x, method="saliency", targets=0).maps

        return run

    started = time.perf_counter()
    raise_first(run_threads([explain("a", a), explain("b", b)]))
    assert time.perf_counter() - started < PATIENCE
    assert results["a"].shape == results["b"].shape == (1, 4, 4)


class InFlight(nn.Module):
    """Counts how many of its forwards run at once (each lingers a little to let others in)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 4 * 4, 2)
        self.lock = threading.Lock()
        self.now = self.most = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(0.005)
        with self.lock:
            self.now -= 1
        return self.fc(torch.flatten(x, 1))


def occlude_from_four_threads(models: list[nn.Module]) -> None:
    x = images(3, size=4, seed=1)

    def worker(index: int) -> Callable[[], None]:
        def run() -> None:
            for _ in range(5):
                vx.explain(models[index % len(models)], x, method="occlusion", window=2, stride=2, engine="torch")

        return run

    raise_first(run_threads([worker(i) for i in range(4)]))


def test_calls_on_one_model_never_overlap_even_through_two_adapters():
    model = InFlight()
    adapters = [vx.adapt(model), vx.adapt(model)]
    assert adapters[0].exclusive_keys == adapters[1].exclusive_keys == tuple(model.modules())
    occlude_from_four_threads(adapters)
    assert model.most == 1


def test_models_sharing_a_submodule_never_overlap():
    """Eval-mode flips and hooks reach the shared module from either model."""
    backbone = InFlight()
    occlude_from_four_threads([nn.Sequential(backbone), nn.Sequential(backbone, nn.Identity())])
    assert backbone.most == 1


def test_fx_trace_in_one_thread_never_reaches_models_running_in_others(x):
    """Tracing patches torch.nn.Module for the whole process: each fresh model traced by the
    occlusion thread would hand Proxies to the other threads' models if their calls overlapped."""
    busy = seeded_cnn(seed=0)
    expected = {m: vx.explain(seeded_cnn(seed=0), x, method=m) for m in ("saliency", "gradcam")}
    expected_occlusion = vx.explain(seeded_cnn(seed=1), x, method="occlusion", window=4, stride=4, engine="incremental")
    done = threading.Event()

    def tracing() -> None:
        try:
            for _ in range(15):
                got = vx.explain(seeded_cnn(seed=1), x, method="occlusion", window=4, stride=4, engine="incremental")
                assert got.options["engine"] == "incremental" and "engine_fallback" not in got.options
                assert_same_explanation(got, expected_occlusion)
        finally:
            done.set()

    def running(method: str) -> Callable[[], None]:
        def run() -> None:
            while not done.is_set():
                assert_same_explanation(vx.explain(busy, x, method=method), expected[method])

        return run

    raise_first(run_threads([tracing, running("saliency"), running("gradcam"), running("saliency")]))


def test_onnx_exports_in_several_threads_at_once(x):
    """The TorchScript exporter's state is process-wide: exports of different models at once, and
    models running meanwhile, all give their single-threaded results."""
    expected = {s: vx.explain(seeded_cnn(seed=s), x, method="scorecam", engine="onnx") for s in (0, 1, 2)}
    busy = seeded_cnn(seed=3)
    expected_busy = vx.explain(seeded_cnn(seed=3), x, method="gradcam")
    done = threading.Barrier(3)

    def exporting(seed: int) -> Callable[[], None]:
        def run() -> None:
            try:
                for _ in range(4):
                    got = vx.explain(seeded_cnn(seed=seed), x, method="scorecam", engine="onnx")  # a new model: a new export
                    assert got.options["export_cached"] is False
                    assert_same_explanation(got, expected[seed])
            finally:
                done.wait(PATIENCE)

        return run

    stop = threading.Event()

    def watcher() -> None:
        done.wait(PATIENCE * 5)
        stop.set()

    def running() -> None:
        while not stop.is_set():
            assert_same_explanation(vx.explain(busy, x, method="gradcam"), expected_busy)

    threading.Thread(target=watcher, daemon=True).start()
    raise_first(run_threads([exporting(0), exporting(1), running]))
    stop.set()


# ----------------------------------------------------------------------------------------------
# The readers-writer lock itself
# ----------------------------------------------------------------------------------------------


def in_thread(function: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=function, daemon=True)
    thread.start()
    return thread


def test_shared_holders_overlap_and_exclusive_waits_for_them():
    lock = ReadersWriterLock()
    first_in, second_in, release = threading.Event(), threading.Event(), threading.Event()
    writer_in = threading.Event()

    def reader(entered: threading.Event, other: threading.Event) -> Callable[[], None]:
        def run() -> None:
            with lock.shared():
                entered.set()
                assert other.wait(PATIENCE)  # both readers inside at once
                release.wait(PATIENCE)

        return run

    readers = [in_thread(reader(first_in, second_in)), in_thread(reader(second_in, first_in))]
    assert first_in.wait(PATIENCE) and second_in.wait(PATIENCE)

    def writer() -> None:
        with lock.exclusive():
            writer_in.set()

    writing = in_thread(writer)
    assert not writer_in.wait(0.2), "the writer got in while readers held the lock"
    release.set()
    assert writer_in.wait(PATIENCE)
    for thread in [*readers, writing]:
        thread.join(PATIENCE)


def test_a_waiting_writer_keeps_new_readers_out_but_not_re_entrant_ones():
    lock = ReadersWriterLock()
    holding, release, writer_waiting = threading.Event(), threading.Event(), threading.Event()
    reentered, newcomer_in, writer_in = threading.Event(), threading.Event(), threading.Event()

    def old_reader() -> None:
        with lock.shared():
            holding.set()
            release.wait(PATIENCE)
            with lock.shared():  # a writer now waits: a re-entrant reader must still get in
                reentered.set()

    def writer() -> None:
        writer_waiting.set()
        with lock.exclusive():
            writer_in.set()
            assert not newcomer_in.is_set(), "a new reader overtook the waiting writer"

    def newcomer() -> None:
        with lock.shared():
            newcomer_in.set()

    reading = in_thread(old_reader)
    assert holding.wait(PATIENCE)
    writing = in_thread(writer)
    assert writer_waiting.wait(PATIENCE)
    time.sleep(0.1)  # the writer is waiting now
    coming = in_thread(newcomer)
    assert not newcomer_in.wait(0.2), "a new reader got in while a writer waited"
    release.set()
    assert reentered.wait(PATIENCE), "a re-entrant reader waited on the writer: deadlock"
    assert writer_in.wait(PATIENCE) and newcomer_in.wait(PATIENCE)
    for thread in (reading, writing, coming):
        thread.join(PATIENCE)


def test_exclusive_is_re_entrant_and_may_read_but_readers_may_not_upgrade():
    lock = ReadersWriterLock()
    with lock.exclusive():
        with lock.exclusive(), lock.shared():
            pass
    with lock.shared():
        with pytest.raises(RuntimeError, match="deadlock"):
            with lock.exclusive():
                pass
    other_in = threading.Event()

    def other() -> None:
        with lock.exclusive():
            other_in.set()

    in_thread(other).join(PATIENCE)
    assert other_in.is_set(), "the lock was left held"
