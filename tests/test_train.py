import jax
import jax.numpy as jnp
import numpy as np

from jsplit.compress import magnitude_mask
from jsplit.train import evaluate, fit, random_shift, seed_slice, stack_seeds, train_epoch


def test_training_reaches_accuracy_on_real_slice(lenet, mnist_slice, trained_params):
    loss, accuracy = evaluate(lenet, trained_params, mnist_slice.x_test, mnist_slice.y_test)

    assert float(accuracy) > 0.90
    assert float(loss) < 0.35


def test_masked_finetune_keeps_pruned_weights_zero(lenet, mnist_slice, trained_params):
    mask = magnitude_mask(trained_params, 0.8)
    data = mnist_slice

    result = fit(lenet, trained_params, data.x_train[:2000], data.y_train[:2000], data.x_test, data.y_test,
                 epochs=1, batch_size=100, learning_rate=1e-3, key=jax.random.PRNGKey(2), mask=mask)

    for kernel, keep in ((result.params["params"][n]["kernel"], mask["params"][n]["kernel"])
                         for n in ("dense1", "dense2", "dense3")):
        assert np.all(np.asarray(kernel)[keep == 0] == 0.0)
    assert len(result.test_accuracy) == 1


def test_seeds_train_together_and_differ(lenet, mnist_slice):
    data = mnist_slice
    initial = stack_seeds([lenet.init(jax.random.PRNGKey(s)) for s in range(3)])
    result = fit(lenet, initial, data.x_train[:3000], data.y_train[:3000], data.x_test, data.y_test, epochs=2,
                 batch_size=100, learning_rate=2e-3, key=jax.random.PRNGKey(5), stacked=True)

    assert result.params["params"]["dense1"]["kernel"].shape == (3, 784, 300)
    assert len(result.seed_accuracy) == 3
    assert min(result.seed_accuracy) > 0.8
    assert np.std(result.seed_accuracy) > 0.0  # different initialisations and batch orders
    assert result.test_accuracy[-1] == np.mean(result.seed_accuracy)
    # each seed's parameters are that seed's model: evaluating it alone gives its accuracy
    for seed in range(3):
        _, accuracy = evaluate(lenet, seed_slice(result.params, seed), data.x_test, data.y_test)
        assert abs(float(accuracy) - result.seed_accuracy[seed]) < 1e-6


def test_random_shift_translates_each_image(mnist_slice):
    x = np.asarray(mnist_slice.x_train[:64])
    shifted = np.asarray(random_shift(jnp.asarray(x), jax.random.PRNGKey(0), 2)).reshape(-1, 28, 28)
    padded = np.pad(x.reshape(-1, 28, 28), ((0, 0), (2, 2), (2, 2)))

    # every output is the zero-padded input cropped at one of the 5 x 5 offsets
    offsets = []
    for image, padded_image in zip(shifted, padded):
        matches = [(dy, dx) for dy in range(5) for dx in range(5)
                   if np.array_equal(padded_image[dy:dy + 28, dx:dx + 28], image)]
        assert matches
        offsets.append(matches[0])
    assert len(set(offsets)) > 10  # offsets are drawn per image
    np.testing.assert_array_equal(random_shift(jnp.asarray(x), jax.random.PRNGKey(0), 0), x)


def test_fit_reuses_compiled_epoch(lenet, mnist_slice, trained_params):
    data = mnist_slice
    settings = dict(epochs=1, batch_size=100, learning_rate=1e-4)
    fit(lenet, trained_params, data.x_train[:1000], data.y_train[:1000], data.x_test, data.y_test,
        key=jax.random.PRNGKey(0), **settings)
    compiled = train_epoch._cache_size()

    fit(lenet, trained_params, data.x_train[:1000], data.y_train[:1000], data.x_test, data.y_test,
        key=jax.random.PRNGKey(1), **settings)
    assert train_epoch._cache_size() == compiled  # same settings, so no new compilation
