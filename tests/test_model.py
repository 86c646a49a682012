import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsplit.model import build_network
from jsplit.profile import dense_macs


@pytest.mark.parametrize("split", [0, 1, 2, 3])
def test_head_tail_equals_full(lenet, split):
    params = lenet.init(jax.random.PRNGKey(3))
    x = jax.random.uniform(jax.random.PRNGKey(4), (16, 784))

    h = lenet.head(params, x, split)
    logits = lenet.tail(params, h, split)

    assert h.shape == (16, lenet.boundary_sizes[split])
    np.testing.assert_allclose(logits, lenet.full(params, x), rtol=1e-6, atol=1e-6)


def test_hidden_activations_are_relu_outputs(lenet):
    params = lenet.init(jax.random.PRNGKey(3))
    h = lenet.head(params, jnp.ones((4, 784)), 1)

    assert float(h.min()) >= 0.0


def test_dense_lenet300100_macs(lenet):
    params = lenet.init(jax.random.PRNGKey(0))

    assert dense_macs(lenet, params) == 266_200


def test_unknown_model_rejected():
    with pytest.raises(ValueError, match="model.name"):
        build_network("resnet", (10,))
