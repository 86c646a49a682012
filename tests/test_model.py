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


@pytest.mark.parametrize("split", range(7))
def test_lenet5_head_tail_equals_full(lenet5, split):
    params = lenet5.init(jax.random.PRNGKey(3))
    x = jax.random.uniform(jax.random.PRNGKey(4), (8, 784))

    h = lenet5.head(params, x, split)

    assert h.shape == (8, lenet5.boundary_sizes[split])
    np.testing.assert_allclose(lenet5.tail(params, h, split), lenet5.full(params, x), rtol=1e-5, atol=1e-5)


def test_lenet5_boundaries_and_macs(lenet5):
    params = lenet5.init(jax.random.PRNGKey(0))

    # input, conv1 24x24x20, pool 12x12x20, conv2 8x8x50, pool 4x4x50, dense 500, logits 10
    assert lenet5.boundary_sizes == (784, 11520, 2880, 3200, 800, 500, 10)
    # K_h K_w C_in C_out H_out W_out per convolution, in x out per dense layer
    expected = 5 * 5 * 1 * 20 * 24 * 24 + 5 * 5 * 20 * 50 * 8 * 8 + 800 * 500 + 500 * 10
    assert dense_macs(lenet5, params) == expected == 2_293_000


def test_lenet5_pooling_costs_no_weights(lenet5):
    from jsplit.compress import candidate_grid, magnitude_mask
    from jsplit.profile import build_table
    from tests.test_profile import HOROWITZ

    dense = lenet5.init(jax.random.PRNGKey(0))
    sparse = jax.tree.map(lambda p, m: p * m, dense, magnitude_mask(dense, 0.9))
    grid = candidate_grid([0.0, 0.9], lenet5.num_layers, [32])
    table = build_table(lenet5, [dense, sparse], grid, np.zeros(len(grid)), np.ones(len(grid)), HOROWITZ, 0.2)

    def at(model, split):
        return int(np.flatnonzero((table.model_index == model) & (table.split == split))[0])

    # Split 1 runs conv1: 500 weights and 20 biases; split 2 adds the pooling, which fetches nothing.
    assert table.weights_fetched[at(0, 1)] == 5 * 5 * 20 + 20
    assert table.weights_fetched[at(0, 2)] == table.weights_fetched[at(0, 1)]
    assert table.macs[at(0, 2)] == table.macs[at(0, 1)] == 288_000
    assert table.bits_sent[at(0, 2)] == 2880 * 32
    kernels = 5 * 5 * 20 + 5 * 5 * 20 * 50 + 800 * 500 + 500 * 10
    biases = 20 + 50 + 500 + 10
    assert table.weights_fetched[at(1, 6)] - biases == pytest.approx(0.1 * kernels, abs=1)
    # Global pruning keeps more of the small convolution kernels, whose weights are each used 576 or 64 times.
    assert table.macs[at(1, 6)] < table.macs[at(0, 6)]


def test_patch_convolution_matches_lax_convolution(lenet5):
    params = lenet5.init(jax.random.PRNGKey(0))
    x = jax.random.uniform(jax.random.PRNGKey(1), (4, 12, 12, 20))
    kernel, bias = params["params"]["conv2"]["kernel"], params["params"]["conv2"]["bias"]
    reference = jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    ours = lenet5.layer(params, x.reshape(4, -1), 2).reshape(4, 8, 8, 50)

    np.testing.assert_allclose(ours, jax.nn.relu(reference + bias), rtol=1e-4, atol=1e-5)
