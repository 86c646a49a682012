import jax
import numpy as np

from jsplit.compress import magnitude_mask
from jsplit.train import evaluate, fit


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
