import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsplit.compress import (
    calibrate_clips, candidate_grid, evaluate_candidates, forward_with_cut, kernel_sparsity, magnitude_mask,
    quantize_activation,
)
from jsplit.train import evaluate


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.95])
def test_magnitude_mask_sparsity(lenet, scope, sparsity):
    params = lenet.init(jax.random.PRNGKey(0))
    pruned = jax.tree.map(lambda p, m: p * m, params, magnitude_mask(params, sparsity, scope))

    assert kernel_sparsity(pruned) == pytest.approx(sparsity, abs=1e-4)


def test_layer_scope_prunes_every_layer_equally(lenet):
    params = lenet.init(jax.random.PRNGKey(0))
    mask = magnitude_mask(params, 0.9, "layer")

    for name in ("dense1", "dense2", "dense3"):
        assert float(1.0 - mask["params"][name]["kernel"].mean()) == pytest.approx(0.9, abs=1e-3)
        assert mask["params"][name]["bias"].min() == 1.0


def test_global_mask_removes_smallest_weights(lenet):
    params = lenet.init(jax.random.PRNGKey(0))
    mask = magnitude_mask(params, 0.5)
    kernels = [np.abs(params["params"][n]["kernel"]) for n in ("dense1", "dense2", "dense3")]
    masks = [mask["params"][n]["kernel"] for n in ("dense1", "dense2", "dense3")]

    largest_pruned = max(k[m == 0].max() for k, m in zip(kernels, masks))
    smallest_kept = min(k[m == 1].min() for k, m in zip(kernels, masks))
    assert largest_pruned <= smallest_kept


def test_sparsity_out_of_range_rejected(lenet):
    with pytest.raises(ValueError, match="sparsity must be in"):
        magnitude_mask(lenet.init(jax.random.PRNGKey(0)), 1.0)


@pytest.mark.parametrize("bits", [2, 4, 8, 16])
def test_quantization_error_within_half_step(bits):
    h = jax.random.uniform(jax.random.PRNGKey(0), (10000,), maxval=3.0)
    clip = 3.0
    q = quantize_activation(h, bits, clip)
    step = clip / (2**bits - 1)

    assert float(jnp.abs(q - h).max()) <= step / 2 + 1e-6
    assert len(np.unique(np.asarray(q))) <= 2**bits


def test_quantization_float32_is_identity():
    h = jnp.asarray([0.1, 2.5, 7.0])

    np.testing.assert_array_equal(quantize_activation(h, 32, 1.0), h)


def test_candidate_grid_layout():
    grid = candidate_grid([0.0, 0.5, 0.9], num_layers=3, activation_bits=[32, 16, 8])

    # per sparsity: split 0 (raw, 8 bits) + 2 inner splits x 3 widths + split 3 (label, 4 bits)
    assert len(grid) == 3 * (1 + 2 * 3 + 1)
    assert set(grid.activation_bits[grid.split == 0]) == {8}
    assert set(grid.activation_bits[grid.split == 3]) == {4}


def test_float_candidates_match_plain_evaluation(lenet, mnist_slice, trained_params):
    data = mnist_slice
    clips = calibrate_clips(lenet, trained_params, data.x_train[:1000])[None, :]
    grid = candidate_grid([0.0], 3, [32, 4])
    loss, accuracy = evaluate_candidates(lenet, [trained_params], clips, grid, data.x_test, data.y_test)
    plain_loss, plain_accuracy = evaluate(lenet, trained_params, data.x_test, data.y_test)

    exact = (grid.activation_bits != 4) | (grid.split == 3)  # the label at split 3 is exact
    np.testing.assert_allclose(accuracy[exact], float(plain_accuracy), atol=1e-6)
    np.testing.assert_allclose(loss[exact], float(plain_loss), rtol=1e-4)
    assert np.all(loss[~exact] != loss[exact][0])


def test_cut_quantization_matches_manual_head_tail(lenet, mnist_slice, trained_params):
    x = jnp.asarray(mnist_slice.x_test[:64])
    clips = calibrate_clips(lenet, trained_params, mnist_slice.x_train[:1000])

    h = quantize_activation(lenet.head(trained_params, x, 2), 8, clips[2])
    manual = lenet.tail(trained_params, h, 2)

    np.testing.assert_allclose(forward_with_cut(lenet, trained_params, x, 2, 8, jnp.asarray(clips)), manual,
                               rtol=1e-5, atol=1e-5)


def test_exact_candidates_share_one_evaluation(lenet, mnist_slice, trained_params):
    data = mnist_slice
    clips = calibrate_clips(lenet, trained_params, data.x_train[:1000])[None, :]
    grid = candidate_grid([0.0], 3, [32, 16, 8])
    loss, accuracy = evaluate_candidates(lenet, [trained_params], clips, grid, data.x_test, data.y_test)
    exact = (grid.activation_bits == 32) | (grid.split == 0) | (grid.split == 3)

    assert len(set(loss[exact])) == 1
    assert len(set(accuracy[exact])) == 1
    assert len(set(loss[~exact])) == (~exact).sum()
