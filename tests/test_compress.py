import dataclasses

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


def _masked(params, mask):
    return jax.tree.map(lambda p, m: p * m, params, mask)


def test_structured_mask_removes_weakest_units(lenet, trained_params):
    from jsplit.compress import alive_channels, structured_mask

    mask = structured_mask(lenet, trained_params, 0.5)
    pruned = _masked(trained_params, mask)
    tree, kept = trained_params["params"], mask["params"]

    for name, units, next_name in (("dense1", 300, "dense2"), ("dense2", 100, "dense3")):
        alive = kept[name]["bias"] == 1.0
        assert alive.sum() == units // 2
        # the next layer no longer reads a removed unit
        assert np.all(kept[next_name]["kernel"][~alive, :] == 0.0)
    assert kept["dense3"]["bias"].min() == 1.0  # the output layer keeps all ten classes
    original = np.linalg.norm(np.asarray(tree["dense1"]["kernel"]), axis=0)
    alive1 = kept["dense1"]["bias"] == 1.0
    assert original[~alive1].max() <= original[alive1].min()

    # removed units output exactly zero, so the activation that is sent shrinks
    h = np.asarray(lenet.head(pruned, jnp.asarray(np.random.default_rng(0).random((64, 784)), jnp.float32), 1))
    assert np.all(h[:, ~alive1] == 0.0)
    np.testing.assert_array_equal(alive_channels(lenet, pruned), [784, 150, 50, 10])


def test_structured_mask_on_lenet5_follows_channels_through_pooling(lenet5):
    from jsplit.compress import alive_channels, structured_mask

    params = lenet5.init(jax.random.PRNGKey(0))
    mask = structured_mask(lenet5, params, 0.5)
    kept = mask["params"]
    conv1_alive = kept["conv1"]["bias"] == 1.0
    conv2_alive = kept["conv2"]["bias"] == 1.0

    assert conv1_alive.sum() == 10
    assert conv2_alive.sum() == 25
    assert (kept["fc1"]["bias"] == 1.0).sum() == 250
    assert np.all(kept["conv2"]["kernel"][:, :, ~conv1_alive, :] == 0.0)
    # fc1 reads the pooled 4x4x50 activation flattened with the channel fastest
    rows = kept["fc1"]["kernel"].reshape(4, 4, 50, 500)
    assert np.all(rows[:, :, ~conv2_alive, :] == 0.0)
    assert np.all(rows[:, :, conv2_alive, :].any(axis=(0, 1, 3)))

    pruned = _masked(params, mask)
    np.testing.assert_array_equal(alive_channels(lenet5, pruned), [784, 10, 10, 25, 25, 250, 10])
    x = jnp.asarray(np.random.default_rng(1).random((8, 784)), jnp.float32)
    pooled = np.asarray(lenet5.head(pruned, x, 4)).reshape(8, 4, 4, 50)
    assert np.all(pooled[..., ~conv2_alive] == 0.0)


def test_structured_pruning_rejects_out_of_range(lenet):
    from jsplit.compress import structured_mask

    with pytest.raises(ValueError, match="structured sparsity must be in"):
        structured_mask(lenet, lenet.init(jax.random.PRNGKey(0)), 1.0)


def test_iterative_rounds_reach_the_level_and_nest(lenet, mnist_slice, trained_params):
    from jsplit.compress import prune_and_finetune
    from jsplit.train import stack_seeds

    small = dataclasses.replace(mnist_slice, x_train=mnist_slice.x_train[:1000], y_train=mnist_slice.y_train[:1000])
    levels = prune_and_finetune(lenet, stack_seeds([trained_params]), small, sparsities=[0.5, 0.9], scope="global",
                                epochs=1, learning_rate=1e-4, batch_size=100, key=jax.random.PRNGKey(0), rounds=3)

    assert [level.sparsity for level in levels] == [0.5, 0.9]
    for level in levels:
        assert kernel_sparsity(jax.tree.map(lambda leaf: leaf[0], level.params)) == pytest.approx(level.sparsity, abs=1e-4)
    outer, inner = (jax.tree.leaves(level.mask) for level in levels)
    assert all(np.all(b <= a) for a, b in zip(outer, inner))  # every mask contains the next one


def test_seed_evaluation_matches_single_models(lenet, mnist_slice, trained_params):
    other = jax.tree.map(lambda p: p * 0.9, trained_params)
    x = mnist_slice.x_train[:1000]
    clips = np.stack([calibrate_clips(lenet, p, x) for p in (trained_params, other)])  # [S, L]
    grid = candidate_grid([0.0], 3, [32, 4])
    from jsplit.train import stack_seeds

    loss, accuracy = evaluate_candidates(lenet, [stack_seeds([trained_params, other])], clips[None], grid,
                                         mnist_slice.x_test, mnist_slice.y_test, stacked=True)
    assert loss.shape == accuracy.shape == (len(grid), 2)
    for seed, params in enumerate((trained_params, other)):
        single_loss, single_accuracy = evaluate_candidates(lenet, [params], clips[seed][None], grid,
                                                           mnist_slice.x_test, mnist_slice.y_test)
        np.testing.assert_allclose(loss[:, seed], single_loss, rtol=1e-5)
        np.testing.assert_allclose(accuracy[:, seed], single_accuracy, atol=1e-6)


def test_integer_levels_send_at_their_own_width():
    from jsplit.compress import Level

    grid = candidate_grid([Level(0.0, False, 32), Level(0.0, False, 8), Level(0.5, True, 4)], 3, [32, 16, 8])
    inner = grid.split == 1

    assert set(grid.activation_bits[inner & (grid.model_index == 0)]) == {32, 16, 8}
    assert set(grid.activation_bits[inner & (grid.model_index == 1)]) == {8}
    assert set(grid.activation_bits[inner & (grid.model_index == 2)]) == {4}


def test_own_width_cut_is_lossless(lenet, mnist_slice, trained_params):
    from jsplit.quantize import forward, quantize_weights

    clips = jnp.asarray(calibrate_clips(lenet, trained_params, mnist_slice.x_train[:1000]))
    x = jnp.asarray(mnist_slice.x_test[:500])
    for bits in (4, 8):
        params = quantize_weights(trained_params, bits)
        own = np.asarray(forward(lenet, params, x, bits, clips))
        for split in (1, 2):
            np.testing.assert_array_equal(np.asarray(forward(lenet, params, x, bits, clips, split, bits)), own)
