"""The viewer's JSON API through Starlette's TestClient (no socket): what it lists comes from the
registry, what it explains equals ``vx.explain`` exactly, and every bad request is a 4xx JSON line."""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from viewer_helpers import client, decode_npy, decode_png, demo_model, png_of, scene

import vexplain as vx
from vexplain.core.images import preprocess
from vexplain.core.notices import warn
from vexplain.core.registry import REGISTRY
from vexplain.viewer.handlers import RESERVED_FIELDS
from vexplain.viewer.uploads import FORM_OVERHEAD, Limits


@pytest.fixture(scope="module")
def model():
    return demo_model()


@pytest.fixture(scope="module")
def api(model):
    return client(model)


def post(api, image: bytes | None, filename: str = "scene.png", **fields: str):
    files = {"image": (filename, image, "image/png")} if image is not None else None
    return api.post("/api/explain", files=files, data=fields)


def one_line_error(response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["error"]
    assert message and "\n" not in message and "Traceback" not in message
    return message


# --- listing ---------------------------------------------------------------------------------------


def test_methods_are_the_registry_with_their_defaults_and_what_runs_here(api, model):
    listed = api.get("/api/methods").json()
    registered = vx.methods()
    assert [m["name"] for m in listed] == [m.name for m in registered]
    for row, info in zip(listed, registered):
        assert row["summary"] == info.summary and row["backends"] == list(info.backends)
        assert {k: o["text"] for k, o in row["options"].items()} == {k: repr(v) for k, v in info.options.items()}
        assert row["works"] == all(model.adapter.supports(c) for c in info.requires)
    assert [m["name"] for m in listed if m["default"]] == ["gradcam"]


def test_no_builtin_option_is_shadowed_by_a_form_field():
    clashes = {(m.name, k) for m in vx.methods() for k in m.options if k in RESERVED_FIELDS}
    assert clashes == set()


class Constant(vx.Explainer):
    """A plugin method: every map is ``value`` and it always warns, so the test knows both."""

    name = "test_viewer_constant"
    requires = ("forward",)
    summary = "a constant map"
    options = {"value": vx.Option(1.5, float, "the map's value")}

    def attribute(self, adapter, inputs, targets, options):
        scores = adapter.forward(inputs)
        warn("the constant method ignores the image")
        if options["value"] < 0:
            raise RuntimeError("negative\nsecond line")
        maps = torch.full((inputs.shape[0], *inputs.shape[2:]), options["value"])
        return vx.Attribution(maps=maps, scores=scores, targets=targets.select(scores))


@pytest.fixture
def plugin():
    module = types.ModuleType("test_viewer_plugin")

    @vx.hookimpl
    def register_explainers(register):
        register(Constant)

    module.register_explainers = register_explainers
    name = REGISTRY.register_plugin(module)
    try:
        yield
    finally:
        REGISTRY.unregister_plugin(name)


def test_a_plugin_method_appears_and_runs_with_its_option_and_warning(model, plugin):
    api = client(model)
    row = next(m for m in api.get("/api/methods").json() if m["name"] == "test_viewer_constant")
    assert row["plugin"] == "test_viewer_plugin" and row["options"] == {"value": {"default": 1.5, "text": "1.5"}}
    image, _ = scene()
    body = post(api, png_of(image), method="test_viewer_constant", value="2.25").json()
    assert np.array_equal(decode_npy(body["map_npy"]), np.full((64, 64), 2.25, np.float32))
    assert body["min"] == body["max"] == 2.25
    assert body["options"]["value"] == 2.25
    assert body["warnings"][0] == "the constant method ignores the image"
    assert any("constant" in line and "map" in line for line in body["warnings"][1:])  # the result check's own line


def test_an_internal_error_is_a_500_json_line(model, plugin):
    api = client(model, raise_server_exceptions=False)
    image, _ = scene()
    message = one_line_error(post(api, png_of(image), method="test_viewer_constant", value="-1"), 500)
    assert message.startswith("internal error: RuntimeError: negative")


def test_model_description(api):
    body = api.get("/api/model").json()
    assert body["input_size"] == [64, 64] and body["class_names"] == ["circle", "square", "triangle", "cross"]
    assert body["backend"] == "torch" and body["max_upload_bytes"] == Limits().max_bytes


def test_colormaps_match_the_overlay_colours(api):
    import cv2

    maps = api.get("/api/colormaps").json()
    assert "jet" in maps and "viridis" in maps and all(len(v) == 256 for v in maps.values())
    lut = cv2.cvtColor(cv2.applyColorMap(np.arange(256, dtype=np.uint8)[None], cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)[0]
    assert maps["viridis"][200] == "#%02x%02x%02x" % tuple(int(c) for c in lut[200])


# --- explaining --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "fields"),
    [("gradcam", {}), ("occlusion", {"window": "8", "stride": "(8, 8)"})],
)
def test_explain_equals_the_library(api, model, method, fields):
    image, _ = scene()
    response = post(api, png_of(image), method=method, overlay_alpha="0.3", overlay_colormap="viridis", **fields)
    assert response.status_code == 200, response.text
    body = response.json()
    options = {k: eval(v) for k, v in fields.items()}  # the test's own literals
    exp = vx.explain(model.adapter, preprocess(image, model.size, model.mean, model.std)[None], method=method, **options)
    raw = decode_npy(body["map_npy"])
    assert raw.dtype == np.float32 and raw.shape == (64, 64) and body["shape"] == [64, 64]
    assert np.array_equal(raw, exp.maps[0])
    assert body["min"] == pytest.approx(float(exp.maps[0].min()), abs=0) and body["max"] == float(exp.maps[0].max())
    assert np.array_equal(decode_png(body["overlay_png"]), exp.overlay([image], colormap="viridis", alpha=0.3)[0])
    assert np.array_equal(decode_png(body["image_png"]), image)
    target = int(exp.targets[0])
    assert body["target"] == target and body["class_name"] == model.class_names[target]
    assert body["score"] == pytest.approx(float(exp.scores[0, target]), rel=1e-6)
    assert set(body["timings"]) >= {"total", "request"} and body["warnings"] == list(exp.warnings)
    if method == "occlusion":
        assert body["options"]["window"] == [8, 8] and body["options"]["stride"] == [8, 8]


def test_target_by_index_and_by_class_name(api):
    image, _ = scene()
    by_index = post(api, png_of(image), method="cam", target="2").json()
    by_name = post(api, png_of(image), method="cam", target="triangle").json()
    assert by_index["target"] == by_name["target"] == 2 and by_name["class_name"] == "triangle"
    assert np.array_equal(decode_npy(by_index["map_npy"]), decode_npy(by_name["map_npy"]))


def test_a_larger_photo_is_resized_to_the_models_input(api):
    image, _ = scene(size=96)
    body = post(api, png_of(image), method="cam").json()
    assert body["shape"] == [64, 64] and decode_png(body["image_png"]).shape == (64, 64, 3)


# --- bad requests --------------------------------------------------------------------------------------


def test_unknown_method(api):
    image, _ = scene()
    message = one_line_error(post(api, png_of(image), method="gradcamm"), 400)
    assert "unknown method 'gradcamm'" in message and "gradcam" in message


def test_bad_options(api):
    image, _ = scene()
    assert "must be 'patch', an int >= 1" in one_line_error(post(api, png_of(image), method="occlusion", window="big"), 400)
    assert "has no option 'windw'" in one_line_error(post(api, png_of(image), method="occlusion", windw="8"), 400)
    assert "overlay_alpha" in one_line_error(post(api, png_of(image), method="cam", overlay_alpha="half"), 400)
    assert "must be in [0, 1]" in one_line_error(post(api, png_of(image), method="cam", overlay_alpha="2"), 400)
    assert "unknown colormap" in one_line_error(post(api, png_of(image), method="cam", overlay_colormap="nope"), 400)


def test_bad_target(api):
    image, _ = scene()
    message = one_line_error(post(api, png_of(image), method="cam", target="dog"), 400)
    assert "class names: circle, square, triangle, cross" in message
    one_line_error(post(api, png_of(image), method="cam", target="9"), 400)


def test_missing_fields(api):
    image, _ = scene()
    without_image = api.post("/api/explain", files={"method": (None, "cam")})
    assert "'image' field" in one_line_error(without_image, 400)
    assert "'method' field" in one_line_error(post(api, png_of(image)), 400)
    assert "multipart" in one_line_error(api.post("/api/explain", content=b"{}", headers={"content-type": "application/json"}), 400)
    assert "multipart" in one_line_error(post(api, None, method="cam"), 400)  # a urlencoded form


def test_a_method_the_model_cannot_run_names_those_that_can():
    from vexplain.demo.model import ASSETS
    from vexplain.viewer.handlers import ViewerModel

    onnx = ViewerModel.from_adapter(vx.adapt(str(ASSETS / "demo_cnn.onnx")), "onnx", size=(64, 64))
    api = client(onnx)
    assert next(m for m in api.get("/api/methods").json() if m["name"] == "gradcam")["works"] is False
    image, _ = scene()
    message = one_line_error(post(api, png_of(image), method="gradcam"), 400)
    assert "activation_gradients" in message and "occlusion" in message


@pytest.mark.parametrize("payload", [b"", b"not an image at all", png_of(scene()[0])[:200]])
def test_corrupt_or_empty_images(api, payload):
    message = one_line_error(post(api, payload, filename="../../etc/evil name.png", method="cam"), 400)
    assert "evil_name.png" in message and "/tmp" not in message and "vexplain-viewer-" not in message


def test_too_large_uploads_are_refused_before_decoding(model):
    image, _ = scene()
    data = png_of(image)
    small = client(model, Limits(max_bytes=len(data) - 1))
    assert "upload too large" in one_line_error(post(small, data, method="cam"), 413)
    # a body past the limit is answered from its Content-Length, before the form is parsed
    huge = b"x" * (len(data) + FORM_OVERHEAD + 10)
    response = small.post("/api/explain", content=huge, headers={"content-type": "multipart/form-data; boundary=b"})
    assert f"upload too large (got {len(huge) / 2**20:.1f} MiB)" in one_line_error(response, 413)

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(40):
            yield b"y" * 10_000

    response = small.post("/api/explain", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert "content-length" not in response.request.headers
    assert one_line_error(response, 413).startswith("upload too large: images up to")


def test_too_many_pixels(model):
    image, _ = scene()
    message = one_line_error(post(client(model, Limits(max_pixels=64 * 63)), png_of(image), method="cam"), 413)
    assert "64x64" in message and "--max-pixels" in message


# --- the page and its files ------------------------------------------------------------------------------


def test_page_and_static_files(api):
    page = api.get("/")
    assert page.status_code == 200 and "/static/viewer.js" in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    for name, kind in (("viewer.js", "text/javascript"), ("viewer.css", "text/css"), ("index.html", "text/html")):
        response = api.get(f"/static/{name}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)


@pytest.mark.parametrize(
    "path",
    [
        "/static/..%2Fapp.py", "/static/%2e%2e%2fapp.py", "/static/..%2F..%2Fcore%2Fapi.py", "/static/app.py",
        "/static/__init__.py", "/static/%2Fetc%2Fpasswd", "/static/..%5Capp.py", "/static/", "/static",
        "/static/viewer.js%00.py", "/app.py", "/viewer/app.py", "/api/..%2Fapp.py", "/etc/passwd",
    ],
)
def test_no_path_reaches_the_file_system(api, path):
    response = api.get(path)
    assert response.status_code == 404, (path, response.status_code)
    assert set(response.json()) == {"error"}


def test_only_local_host_names_and_same_origin_posts(api):
    image, _ = scene()
    assert api.get("/", headers={"host": "attacker.example"}).status_code == 400
    assert api.get("/api/model", headers={"host": "localhost:8000"}).status_code == 200
    response = api.post("/api/explain", files={"image": ("a.png", png_of(image))}, data={"method": "cam"}, headers={"origin": "http://attacker.example"})
    assert "refused" in one_line_error(response, 403)
    ok = api.post("/api/explain", files={"image": ("a.png", png_of(image))}, data={"method": "cam"}, headers={"origin": "http://127.0.0.1:8000"})
    assert ok.status_code == 200


def test_wrong_verb(api):
    one_line_error(api.get("/api/explain"), 405)


def test_a_non_square_upload_is_centre_cropped_like_the_library_and_says_so(api, model):
    """A 96x64 photo into the 64x64 demo model: the viewer prepares it as vx.prepare_images does
    (shorter side to 64, centre crop), records the crop and warns, instead of squashing it."""
    wide = np.concatenate([scene(seed=4)[0][:, :16], scene(seed=5)[0], scene(seed=6)[0][:, :16]], axis=1)
    assert wide.shape == (64, 96, 3)
    body = post(api, png_of(wide), method="gradcam").json()
    exp = vx.explain(model.adapter, vx.prepare_images(wide, model.adapter), method="gradcam")
    assert np.array_equal(decode_npy(body["map_npy"]), exp.maps[0])
    assert body["options"]["preprocess"][0]["crop_box"] == exp.options["preprocess"][0]["crop_box"]
    assert np.array_equal(decode_png(body["image_png"]), wide[:, 16:80])
    assert any("crop" in line for line in body["warnings"])
