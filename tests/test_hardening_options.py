"""Hardening: no public entry point lets anything but a VexplainError escape on bad input.

The fuzz tables are generated from the registry: every registered method's and metric's declared
options × a set of bad values, plus bad inputs, targets and models. Each call either succeeds or
raises a ``VexplainError`` with a one-line message; any other exception fails the case, named.
Huge values must be refused before any work, so the whole table runs in seconds on a tiny model.
The specific defects behind this file (issue 10, defect 9) have their own tests below the fuzz.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np
import pytest
import torch

import vexplain as vx
from models import images, onnx_bytes, seeded_cnn
from vexplain.cli.main import main
from vexplain.core.options import FLOAT32_MAX, SEED_MAX

#: bad values tried for every declared option
BAD_VALUES: dict[str, Any] = {
    "object": object(),
    "bool": True,
    "negative": -1,
    "zero": 0,
    "negative_float": -0.5,
    "1e9": 10**9,
    "2**64": 2**64,
    "1e308": 1e308,
    "nan": math.nan,
    "inf": math.inf,
    "string": "x",
    "none": None,
    "list": [1, 2],
    "dict": {"a": 1},
}
#: options that keep each call small (each method's quick_options first); the fuzzed option
#: replaces its entry here
FAST = {
    **{info.name: dict(info.quick_options) for info in vx.methods() if info.quick_options},
    "guided_ig": {"steps": 20},
    "occlusion": {"window": 4, "stride": 4},
    "rise": {"masks": 8},
    "smoothgrad": {"samples": 2},
    "integrated_gradients": {"steps": 3},
    "deletion": {"steps": 4},
    "road": {"fractions": (0.5,)},
    "randomization": {"layers": 1},
    "kernel_shap": {"samples": 16},
    "lime": {"samples": 16},
    "shapley_sampling": {"samples": 2},
    "gradient_shap": {"samples": 4},
    "sscam": {"samples": 2},
    "iscam": {"samples": 2},
    "smooth_gradcam_plusplus": {"samples": 2},
}
SIZE = 8
MODEL = seeded_cnn(seed=0, width=4)
X = images(1, size=SIZE, seed=3)
BOX = np.array([[0, 0, 4, 4]])


def outcome(call: Callable[[], Any]) -> str | None:
    """None when ``call`` succeeds or raises a one-line ``VexplainError``; else what went wrong."""
    try:
        call()
    except vx.VexplainError as error:
        message = str(error)
        if not message or "\n" in message:
            return f"{type(error).__name__} not on one line: {message!r}"
        return None
    except Exception as error:  # the point of the test: name anything untyped
        return f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"
    return None


def option_cases(kind: str) -> list[tuple[str, str, str]]:
    infos = vx.methods() if kind == "method" else vx.metrics()
    return [(info.name, option, label) for info in infos for option in info.options for label in BAD_VALUES]


def run_table(cases: list[tuple[str, Any]], call: Callable[[Any], Any]) -> None:
    failures = [f"{name}: {problem}" for name, case in cases if (problem := outcome(lambda: call(case)))]
    assert not failures, f"{len(failures)} of {len(cases)} cases let a non-vexplain exception escape:\n" + "\n".join(failures)


def test_every_method_option_times_bad_values():
    cases = option_cases("method")
    assert len(cases) > 200  # generated from the registry, not a hand-kept list
    # huge counts must be refused before work: a case that starts one would run for hours, which
    # the suite's run time shows (no timed assertion, so a loaded machine cannot fail it)
    run_table(
        [(f"{m}({o}={label})", (m, o, BAD_VALUES[label])) for m, o, label in cases],
        lambda case: vx.explain(MODEL, X, method=case[0], **{**FAST.get(case[0], {}), case[1]: case[2]}),
    )


def test_every_metric_option_times_bad_values():
    cases = option_cases("metric")
    assert len(cases) >= 4 * len(BAD_VALUES)
    run_table(
        [(f"{m}({o}={label})", (m, o, BAD_VALUES[label])) for m, o, label in cases],
        lambda case: vx.evaluate(MODEL, X, "saliency", metric=case[0], masks=BOX, **{**FAST.get(case[0], {}), case[1]: case[2]}),
    )


def test_method_options_given_to_evaluate_and_smoothgrad_base():
    """Options travel on: ``method_options`` of evaluate and ``base_options`` of SmoothGrad."""
    gradient = [m.name for m in vx.methods() if "gradients" in m.requires and m.name != "smoothgrad"]
    cases = [(m, o, label) for m, o, label in option_cases("method") if m in gradient and label in ("1e9", "2**64", "string", "nan")]
    run_table(
        [(f"smoothgrad(base={m}, {o}={label})", (m, o, BAD_VALUES[label])) for m, o, label in cases],
        lambda case: vx.explain(MODEL, X, method="smoothgrad", samples=2, base=case[0], base_options={**FAST.get(case[0], {}), case[1]: case[2]}),
    )
    run_table(
        [(f"evaluate(deletion, {m}, {o}={label})", (m, o, BAD_VALUES[label])) for m, o, label in cases],
        lambda case: vx.evaluate(MODEL, X, case[0], metric="deletion", steps=4, method_options={**FAST.get(case[0], {}), case[1]: case[2]}),
    )


BAD_INPUTS: dict[str, Callable[[], Any]] = {
    "meta": lambda: torch.empty(1, 3, SIZE, SIZE, device="meta"),
    "sparse": lambda: torch.from_numpy(X).to_sparse(),
    "nested": lambda: torch.nested.nested_tensor([torch.zeros(3, SIZE, SIZE), torch.zeros(3, SIZE, SIZE + 1)]),
    "quantized": lambda: torch.quantize_per_tensor(torch.from_numpy(X), 0.1, 0, torch.quint8),
    "int": lambda: X.astype(np.int64),
    "bool": lambda: X > 0,
    "complex": lambda: X.astype(np.complex64),
    "object": lambda: np.array([[object()]]),
    "nan": lambda: np.full_like(X, np.nan),
    "inf": lambda: np.full_like(X, np.inf),
    "beyond_float32": lambda: np.full(X.shape, 1e300),
    "empty": lambda: X[:0],
    "zero_width": lambda: X[..., :0],
    "rank_5": lambda: X[None],
    "rank_2": lambda: X[0, 0],
    "channels": lambda: X[:, :2],
    "below_receptive_field": lambda: X[..., :1, :1],
    "list": lambda: X.tolist(),
    "string": lambda: "image.png",
    "none": lambda: None,
}


def test_bad_inputs_for_every_method_and_metric():
    methods = [m.name for m in vx.methods()]
    run_table(
        [(f"{m}({label})", (m, make)) for m in methods for label, make in BAD_INPUTS.items()],
        lambda case: vx.explain(MODEL, case[1](), method=case[0], **FAST.get(case[0], {})),
    )
    metrics = [m.name for m in vx.metrics()]
    run_table(
        [(f"{m}({label})", (m, make)) for m in metrics for label, make in BAD_INPUTS.items()],
        lambda case: vx.evaluate(MODEL, case[1](), "saliency", metric=case[0], masks=BOX, **FAST.get(case[0], {})),
    )


BAD_TARGETS: dict[str, Callable[[], Any]] = {
    "2**70": lambda: 2**70,
    "2**63": lambda: 2**63,
    "-2**70": lambda: -(2**70),
    "1e9": lambda: 10**9,
    "negative": lambda: -1,
    "float": lambda: 1.5,
    "nan": lambda: math.nan,
    "bool": lambda: True,
    "string": lambda: "cat",
    "wrong_length": lambda: [0, 1],
    "list_of_2**70": lambda: [2**70],
    "uint64_2**63": lambda: np.array([2**63], dtype=np.uint64),
    "0d_uint64_max": lambda: np.uint64(2**64 - 1),
    "nested_list": lambda: [[0]],
    "meta_tensor": lambda: torch.tensor([1], device="meta"),
    "meta_scalar": lambda: torch.tensor(1, device="meta"),
    "sparse_tensor": lambda: torch.tensor([1]).to_sparse(),
    "float_tensor": lambda: torch.tensor([1.0]),
    "callable_returns_int": lambda: (lambda output: 3),
    "callable_wrong_shape": lambda: (lambda output: output),
    "callable_int_tensor": lambda: (lambda output: output.argmax(1)),
}


def test_bad_targets_for_every_method_and_metric():
    methods = [m.name for m in vx.methods()]
    run_table(
        [(f"{m}(targets={label})", (m, make)) for m in methods for label, make in BAD_TARGETS.items()],
        lambda case: vx.explain(MODEL, X, method=case[0], targets=case[1](), **FAST.get(case[0], {})),
    )
    run_table(
        [(f"deletion(targets={label})", make) for label, make in BAD_TARGETS.items()],
        lambda make: vx.evaluate(MODEL, X, "saliency", metric="deletion", steps=4, targets=make()),
    )


def _models() -> dict[str, Callable[[], Any]]:
    def tuple_output() -> torch.nn.Module:
        class Pair(torch.nn.Module):
            def forward(self, x):
                return MODEL(x), MODEL(x)

        return Pair()

    return {
        "none": lambda: None,
        "int": lambda: 3,
        "missing_file": lambda: "/nonexistent/model.onnx",
        "missing_torch_file": lambda: "/nonexistent/model.pt",
        "bad_factory": lambda: "no_such_module:build",
        "garbage_bytes": lambda: b"not an onnx model",
        "no_parameters": lambda: torch.nn.Flatten(),
        "tuple_output": tuple_output,
        "float64": lambda: seeded_cnn(seed=0, width=4).double(),
        "bfloat16": lambda: seeded_cnn(seed=0, width=4).bfloat16(),
        "float16": lambda: seeded_cnn(seed=0, width=4).half(),
        "onnx_16x16": lambda: onnx_bytes(seeded_cnn(seed=0, width=4), (3, 16, 16)),
    }


def test_bad_models_for_adapt_explain_and_evaluate():
    models = _models()
    run_table(list(models.items()), lambda make: vx.adapt(make()))
    run_table([(f"adapt(batch_size={v!r})", v) for v in ("x", -1, 0, None, 2**64)], lambda v: vx.explain(vx.adapt(MODEL, batch_size=v), X, method="saliency"))
    run_table([("adapt(unknown option)", None)], lambda _: vx.adapt(MODEL, no_such_option=1))
    methods = [m.name for m in vx.methods()]
    run_table(
        [(f"{m} on {label}", (m, make)) for m in methods for label, make in models.items()],
        lambda case: vx.explain(case[1](), X, method=case[0], **FAST.get(case[0], {})),
    )
    run_table(
        [(f"deletion on {label}", make) for label, make in models.items()],
        lambda make: vx.evaluate(make(), X, "saliency", metric="deletion", steps=4),
    )


def test_bad_entry_point_arguments():
    run_table(
        [
            ("unknown method", lambda: vx.explain(MODEL, X, method="no_such_method")),
            ("method not a string", lambda: vx.explain(MODEL, X, method=3)),
            ("unknown metric", lambda: vx.evaluate(MODEL, X, "saliency", metric="no_such_metric")),
            ("metric not a string", lambda: vx.evaluate(MODEL, X, "saliency", metric=None)),
            ("maps of the wrong shape", lambda: vx.evaluate(MODEL, X, np.zeros((2, 2)), metric="deletion")),
            ("maps a string", lambda: vx.evaluate(MODEL, X, "not a method", metric="deletion")),
            ("masks of the wrong shape", lambda: vx.evaluate(MODEL, X, "saliency", metric="pointing_game", masks=np.zeros(3))),
            ("method_options not a dict", lambda: vx.evaluate(MODEL, X, "saliency", metric="deletion", method_options=[1])),
        ],
        lambda call: call(),
    )


# ----------------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory) -> dict[str, str]:
    import cv2

    folder = tmp_path_factory.mktemp("hardening_cli")
    onnx_path = folder / "model.onnx"
    onnx_path.write_bytes(onnx_bytes(seeded_cnn(seed=0, width=4), (3, 16, 16)))
    image = folder / "image.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
    return {"onnx": str(onnx_path), "image": str(image), "out": str(folder / "out")}


def run_cli(capsys, argv: list[str]) -> str | None:
    """None when the CLI exits 0, or 2 with one line on stderr; else what went wrong."""
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse usage errors exit 2
        code = exit_.code
    except Exception as error:
        return f"escaped {type(error).__name__}: {error}"
    err = capsys.readouterr().err.strip()
    if code == 0:
        return None
    if code != 2:
        return f"exit {code}: {err}"
    lines = [line for line in err.splitlines() if line.strip()]
    return None if len(lines) == 1 or err.startswith("usage:") else f"{len(lines)} lines: {err}"


def test_cli_explain_options_times_bad_values(capsys, cli_files):
    """``--option k=v`` for every method's options × the bad values the command line can spell."""
    spelled = {"1e9": "1000000000", "2**64": "18446744073709551616", "1e308": "1e308", "string": "'x'", "list": "[1, 2]"}
    base = ["explain", cli_files["onnx"], cli_files["image"], "--size", "16", "16", "--out", cli_files["out"]]
    failures = []
    for info in vx.methods():
        for option in info.options:
            for label, text in spelled.items():
                fast = [f"{k}={v!r}" for k, v in FAST.get(info.name, {}).items() if k != option]
                argv = [*base, "--method", info.name, *sum((["--option", f] for f in fast), []), "--option", f"{option}={text}"]
                problem = run_cli(capsys, argv)
                if problem:
                    failures.append(f"{info.name} --option {option}={text}: {problem}")
    assert not failures, "\n".join(failures)


def test_cli_bad_targets_sizes_and_models(capsys, cli_files):
    base = ["explain", cli_files["onnx"], cli_files["image"], "--out", cli_files["out"], "--method", "occlusion"]
    cases = {
        "target 2**70": [*base, "--size", "16", "16", "--target", str(2**70)],
        "target -1": [*base, "--size", "16", "16", "--target", "-1"],
        "wrong size for the ONNX model": [*base, "--size", "8", "8"],
        "size 0": [*base, "--size", "0", "0"],
        "huge size": [*base, "--size", "1000000000", "1000000000"],
        "missing model": ["explain", "/nonexistent.onnx", cli_files["image"]],
        "missing image": ["explain", cli_files["onnx"], "/nonexistent.png"],
        "bad factory": ["explain", "no_such_module:build", cli_files["image"]],
        "layers of a missing model": ["layers", "/nonexistent.onnx"],
        "evaluate bad metric option": ["evaluate", cli_files["onnx"], cli_files["image"], "--size", "16", "16", "--metric", "deletion", "--option", "steps=10**9"],
    }
    failures = [f"{name}: {problem}" for name, argv in cases.items() if (problem := run_cli(capsys, argv))]
    assert not failures, "\n".join(failures)


def test_cli_onnx_wrong_size_names_expected_and_given_shape(capsys, cli_files):
    code = main(["explain", cli_files["onnx"], cli_files["image"], "--out", cli_files["out"], "--method", "occlusion", "--size", "8", "8"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "(1, 3, 8, 8)" in err and "16, 16)" in err, err


# ------------------------------------------------------------------- the defects, one by one


def message(call: Callable[[], Any], error: type = vx.VexplainError) -> str:
    with pytest.raises(error) as raised:
        call()
    text = str(raised.value)
    assert text and "\n" not in text
    return text


def test_input_below_the_receptive_field_is_invalid_input():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 5), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))
    for method in ("saliency", "gradcam", "occlusion"):
        text = message(lambda: vx.explain(model, images(1, size=3), method=method), vx.InvalidInput)
        assert "3x3 pixels" in text and "receptive field" in text


def test_input_of_the_wrong_size_for_the_classifier_names_the_features():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(2 * 16 * 16, 3))
    text = message(lambda: vx.explain(model, images(1, size=8), method="saliency"), vx.InvalidInput)
    assert "takes 512 features but got 128" in text


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: torch.empty(1, 3, 8, 8, device="meta"), "'meta' device"),
        (lambda: torch.zeros(1, 3, 8, 8).to_sparse(), "sparse"),
        (lambda: np.full((1, 3, 8, 8), 1e39), "float32's range"),
        (lambda: torch.full((1, 3, 8, 8), 1e39, dtype=torch.float64), "float32's range"),
    ],
)
def test_inputs_without_ordinary_float32_values_are_invalid(make, words):
    assert words in message(lambda: vx.explain(MODEL, make(), method="saliency"), vx.InvalidInput)


def test_targets_beyond_int64_and_on_meta_are_invalid_targets():
    assert "not a class index" in message(lambda: vx.explain(MODEL, X, method="saliency", targets=2**70), vx.InvalidTarget)
    assert "meta" in message(lambda: vx.explain(MODEL, X, method="saliency", targets=torch.tensor([1], device="meta")), vx.InvalidTarget)
    assert "out of range" in message(lambda: vx.explain(MODEL, X, method="saliency", targets=2**62), vx.InvalidTarget)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("method", ["saliency", "gradcam", "cam", "occlusion", "ablationcam", "integrated_gradients"])
def test_models_of_other_dtypes_work_and_agree_with_float32(dtype, method):
    """Inputs are cast to the model's dtype; scores and maps come back float32, equal to the
    float32 model's within that dtype's rounding; half types say so in warnings."""
    x = images(2, size=16, seed=5)
    options = {"occlusion": {"window": 4, "stride": 4}, "integrated_gradients": {"steps": 8}}.get(method, {})
    model = seeded_cnn(seed=0).to(dtype)
    before = {name: p.dtype for name, p in model.named_parameters()}
    exp = vx.explain(model, x, method=method, targets=[1, 3], **options)
    reference = vx.explain(seeded_cnn(seed=0), x, method=method, targets=[1, 3], **options)
    assert exp.maps.dtype == np.float32 and exp.scores.dtype == np.float32
    tolerance = {torch.float64: 1e-5, torch.float16: 0.05, torch.bfloat16: 0.15}[dtype]  # of the largest value
    scale = float(np.abs(reference.maps).max())
    np.testing.assert_allclose(exp.scores, reference.scores, atol=tolerance * float(np.abs(reference.scores).max()))
    np.testing.assert_allclose(exp.maps, reference.maps, atol=tolerance * scale)
    assert {name: p.dtype for name, p in model.named_parameters()} == before
    half = dtype != torch.float64
    assert any("rounding" in line for line in exp.warnings) == half


def test_calls_under_inference_mode_work():
    x = torch.from_numpy(images(1, size=16, seed=2))
    expected = vx.explain(MODEL, x, method="gradcam").maps
    with torch.inference_mode():
        inference_x = x.clone()  # an inference tensor
        for method in ("saliency", "gradcam", "integrated_gradients", "smoothgrad"):
            exp = vx.explain(MODEL, inference_x, method=method, **FAST.get(method, {}))
            assert np.isfinite(exp.maps).all()
        np.testing.assert_array_equal(vx.explain(MODEL, inference_x, method="gradcam").maps, expected)
        vx.evaluate(MODEL, inference_x, "saliency", metric="deletion", steps=4)


def test_seeds_outside_numpys_range_are_refused_with_the_range():
    for method in ("rise", "smoothgrad"):
        text = message(lambda: vx.explain(MODEL, X, method=method, seed=2**64), vx.InvalidOption)
        assert f"0..{SEED_MAX}" in text
    vx.explain(MODEL, X, method="rise", masks=4, seed=SEED_MAX)  # the largest seed works


def test_values_beyond_float32_are_refused_with_the_range():
    for method in ("integrated_gradients", "occlusion"):
        text = message(lambda: vx.explain(MODEL, X, method=method, baseline=1e308), vx.InvalidOption)
        assert "option 'baseline'" in text and "float32's range" in text and f"{FLOAT32_MAX:.4g}" in text


def test_counts_over_the_memory_budget_are_refused_naming_the_largest_that_fits():
    """RISE masks hold cells² + 16 bytes each, SmoothGrad draws 4·C·H·W, IG nodes 28 bytes."""
    text = message(lambda: vx.explain(MODEL, X, method="rise", masks=10**9, cells=4, memory_mb=1), vx.InvalidOption)
    assert "option 'masks'" in text and f"at most {2**20 // 32} fit" in text
    vx.explain(MODEL, X, method="rise", masks=2**20 // 32, cells=4, memory_mb=1, batch_size=2**15)  # the largest fits
    text = message(lambda: vx.explain(MODEL, X, method="smoothgrad", samples=10**9, memory_mb=1), vx.InvalidOption)
    assert "option 'samples'" in text and f"at most {2**20 // (4 * 3 * SIZE * SIZE)} fit" in text
    text = message(lambda: vx.explain(MODEL, X, method="integrated_gradients", rule="riemann_left", steps=10**9), vx.InvalidOption)
    assert "option 'steps'" in text and f"at most {1024 * 2**20 // 28} fit" in text
    text = message(lambda: vx.explain(MODEL, X, method="rise", memory_mb=1e30), vx.InvalidOption)
    assert "option 'memory_mb'" in text and "give at most" in text


def test_rise_cells_finer_than_the_image_are_refused():
    assert f"at most {SIZE}" in message(lambda: vx.explain(MODEL, X, method="rise", cells=SIZE + 1, masks=4), vx.InvalidOption)
    vx.explain(MODEL, X, method="rise", cells=SIZE, masks=4)


def test_gauss_legendre_steps_have_a_documented_maximum_and_fast_nodes():
    from vexplain.plugins.integrated_gradients import GAUSS_LEGENDRE_MAX_STEPS, quadrature

    text = message(lambda: vx.explain(MODEL, X, method="integrated_gradients", steps=GAUSS_LEGENDRE_MAX_STEPS + 1), vx.InvalidOption)
    assert f"at most {GAUSS_LEGENDRE_MAX_STEPS}" in text
    for steps in (1, 2, 7, 50, 300):  # the nodes numpy's leggauss (Captum's) gives
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        alphas, ours = quadrature("gausslegendre", steps)
        np.testing.assert_allclose(alphas, 0.5 * (1 + nodes), rtol=0, atol=1e-13)
        np.testing.assert_allclose(ours, 0.5 * weights, rtol=0, atol=1e-13)
    started = time.perf_counter()
    alphas, weights = quadrature("gausslegendre", GAUSS_LEGENDRE_MAX_STEPS)
    assert time.perf_counter() - started < 60 and abs(weights.sum() - 1) < 1e-12


def test_onnx_wrong_input_size_names_expected_and_given_shape():
    model = onnx_bytes(seeded_cnn(seed=0, width=4), (3, 16, 16))
    text = message(lambda: vx.explain(model, images(1, size=8), method="occlusion"), vx.InvalidInput)
    assert "got (1, 3, 8, 8)" in text and "expects (batch, 3, 16, 16)" in text
