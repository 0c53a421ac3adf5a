"""Fixtures shared by the Captum agreement tests (no tests here): a small seeded CNN, three 32x32
images and their top classes. Import them into a test module to use them."""
from __future__ import annotations

import pytest
import torch

from models import images, seeded_cnn

SIZE = 32


@pytest.fixture(scope="module")
def model():
    return seeded_cnn(seed=0)


@pytest.fixture(scope="module")
def x():
    return images(3, size=SIZE, seed=1)


@pytest.fixture(scope="module")
def top(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).argmax(1)
