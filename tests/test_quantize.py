import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsplit.compress import calibrate_clips, quantize_level, PrunedModel
from jsplit.quantize import forward, quantize_kernel, quantize_weights
from jsplit.train import evaluate, stack_seeds


@pytest.mark.parametrize("bits", [4, 8, 16])
def test_kernel_quantization_is_symmetric_per_output_channel(bits):
    kernel = jax.random.normal(jax.random.PRNGKey(0), (5, 5, 3, 7)) * jnp.arange(1, 8)  # channel scales differ
    q = np.asarray(quantize_kernel(kernel, bits))
    kernel = np.asarray(kernel)
    levels = 2 ** (bits - 1) - 1

    for channel in range(7):
        w, wq = kernel[..., channel], q[..., channel]
        step = np.abs(w).max() / levels
        assert np.abs(wq - w).max() <= step / 2 + 4 * np.finfo(np.float32).eps * np.abs(w).max()
        # the largest magnitude is a level, so the range is used in full; values are integer multiples of the step
        assert np.abs(wq).max() == pytest.approx(np.abs(w).max(), rel=1e-6)
        np.testing.assert_allclose(wq / step, np.round(wq / step), rtol=1e-5, atol=1e-3)
        assert len(np.unique(wq)) <= 2 * levels + 1


def test_kernel_quantization_keeps_zeros_and_float32():
    kernel = jnp.asarray([[0.0, 0.3], [0.0, -1.2], [0.0, 0.001]])
    q = quantize_kernel(kernel, 4)

    assert np.all(np.asarray(q)[:, 0] == 0.0)  # an all-zero (pruned) channel stays zero
    assert float(q[2, 1]) == 0.0  # rounds to zero: 0.001 < step / 2 = 1.2 / 7 / 2
    np.testing.assert_array_equal(quantize_kernel(kernel, 32), kernel)


def test_straight_through_gradient_is_identity(lenet):
    params = lenet.init(jax.random.PRNGKey(0))
    grads = jax.grad(lambda p: sum(jnp.sum(leaf) for leaf in jax.tree.leaves(quantize_weights(p, 4, True))))(params)

    for leaf in jax.tree.leaves(grads):
        np.testing.assert_array_equal(leaf, np.ones_like(leaf))


def test_quantized_forward_approaches_float_as_bits_grow(lenet, mnist_slice, trained_params):
    x = mnist_slice.x_test[:500]
    clips = calibrate_clips(lenet, trained_params, mnist_slice.x_train[:1000])
    reference = np.asarray(lenet.full(trained_params, x))
    errors = {bits: float(np.abs(np.asarray(forward(lenet, trained_params, x, bits, clips)) - reference).max())
              for bits in (4, 8, 16, 32)}

    assert errors[32] == 0.0
    assert errors[16] < 1e-2 * np.abs(reference).max()
    assert errors[16] < errors[8] < errors[4]


def test_int8_rounding_and_qat_accuracy(lenet, mnist_slice, trained_params):
    data = mnist_slice
    clips = calibrate_clips(lenet, trained_params, data.x_train[:1000])
    _, float_accuracy = evaluate(lenet, trained_params, data.x_test, data.y_test)
    _, int8_accuracy = evaluate(lenet, quantize_weights(trained_params, 8), data.x_test, data.y_test, weight_bits=8,
                                clips=clips)
    assert abs(float(int8_accuracy) - float(float_accuracy)) <= 0.01

    # At 2 bits (ternary weights, 3 activation levels) rounding after training loses much of the accuracy.
    # Quantization-aware fine-tuning through the straight-through estimator wins most of it back.
    level = PrunedModel(0.0, False, stack_seeds([trained_params]), None)
    accuracy = {}
    for epochs in (0, 2):
        params = quantize_level(lenet, level, clips[None], 2, data, epochs=epochs, learning_rate=1e-3,
                                batch_size=100, key=jax.random.PRNGKey(3))
        single = jax.tree.map(lambda leaf: leaf[0], params)
        np.testing.assert_allclose(quantize_weights(single, 2)["params"]["dense1"]["kernel"],
                                   single["params"]["dense1"]["kernel"], atol=1e-6)  # stored on the 2-bit grid
        accuracy[epochs] = float(evaluate(lenet, single, data.x_test, data.y_test, weight_bits=2, clips=clips)[1])
    assert accuracy[2] > accuracy[0] + 0.05
