"""Shared by the viewer tests: a demo scene as PNG bytes, the demo model, an API client."""
from __future__ import annotations

import base64
import io

import cv2
import numpy as np
import pytest

pytest.importorskip("starlette", reason="the viewer needs the 'serve' extra")

from starlette.testclient import TestClient  # noqa: E402

from vexplain.demo.scenes import generate_dataset  # noqa: E402
from vexplain.viewer.app import create_app  # noqa: E402
from vexplain.viewer.handlers import ViewerModel  # noqa: E402
from vexplain.viewer.uploads import Limits  # noqa: E402

BASE_URL = "http://127.0.0.1:8000"


def scene(seed: int = 3, size: int = 64) -> tuple[np.ndarray, int]:
    """A generated demo scene, uint8 RGB, and its label."""
    images, labels, _ = generate_dataset(1, seed=seed, size=size)
    return images[0], int(labels[0])


def png_of(rgb: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return encoded.tobytes()


def decode_png(text: str) -> np.ndarray:
    """A base64 PNG (or a data: URL of one) as uint8 RGB."""
    data = base64.b64decode(text.split(",", 1)[-1])
    picture = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert picture is not None
    return cv2.cvtColor(picture, cv2.COLOR_BGR2RGB)


def decode_npy(text: str) -> np.ndarray:
    return np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False)


def demo_model() -> ViewerModel:
    from vexplain.demo.model import demo_adapter

    return ViewerModel.from_adapter(demo_adapter(), "demo_cnn")


def client(model: ViewerModel, limits: Limits | None = None, raise_server_exceptions: bool = True) -> TestClient:
    return TestClient(create_app(model, limits), base_url=BASE_URL, raise_server_exceptions=raise_server_exceptions)
