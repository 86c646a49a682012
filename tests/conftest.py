"""Shared fixtures: a small slice of real MNIST and a briefly trained LeNet-300-100."""

from __future__ import annotations

import jax
import pytest

from jsplit.data import load_dataset
from jsplit.model import build_network
from jsplit.train import fit


@pytest.fixture(scope="session")
def mnist_slice():
    """The first 6,000 training and 2,000 test images of the real MNIST."""
    return load_dataset("mnist", train_size=6000, test_size=2000)


@pytest.fixture(scope="session")
def lenet():
    return build_network("lenet300100", (300, 100, 10))


@pytest.fixture(scope="session")
def lenet5():
    return build_network("lenet5", (20, 50, 500, 10))


@pytest.fixture(scope="session")
def trained_params(lenet, mnist_slice):
    """LeNet-300-100 after eight epochs on the slice (about 94% test accuracy)."""
    data = mnist_slice
    result = fit(lenet, lenet.init(jax.random.PRNGKey(0)), data.x_train, data.y_train, data.x_test, data.y_test,
                 epochs=8, batch_size=100, learning_rate=2e-3, key=jax.random.PRNGKey(1))
    return result.params
