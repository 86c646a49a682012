"""Train and evaluate a SplitNetwork with optax.

One jitted call runs a whole epoch as a ``lax.scan`` over minibatches, so the
host dispatches once per epoch. An optional mask pytree (1 keeps a weight, 0
prunes it) is applied after every update, so pruned weights stay exactly zero
during fine-tuning.
"""

from __future__ import annotations

import dataclasses
import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jsplit.model import SplitNetwork

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """Trained parameters and the per-epoch history.

    Attributes:
        params: Flax parameter pytree.
        train_loss: mean training cross-entropy per epoch [epochs].
        test_accuracy: test accuracy per epoch [epochs], fraction in [0, 1].
        seconds: wall-clock training time.
    """

    params: dict
    train_loss: list[float]
    test_accuracy: list[float]
    seconds: float


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy in nats; logits [n, classes], labels int [n]."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def apply_mask(params, mask):
    """Zero the pruned weights; ``mask`` is None or a pytree shaped like ``params``."""
    if mask is None:
        return params
    return jax.tree.map(lambda p, m: p * m, params, mask)


@functools.partial(jax.jit, static_argnames=("net", "optimizer", "batch_size"))
def train_epoch(net: SplitNetwork, optimizer: optax.GradientTransformation, params, opt_state, mask,
                x: jax.Array, y: jax.Array, key: jax.Array, batch_size: int):
    """Run one epoch of minibatch training over a random permutation of (x, y).

    Args:
        x: float32 [n, input_size] training images; y: int32 [n] labels.
        key: PRNG key for the permutation. The last n % batch_size images of
            the permutation are skipped this epoch.

    Returns:
        (params, opt_state, mean training loss of the epoch).
    """
    num_batches = x.shape[0] // batch_size
    order = jax.random.permutation(key, x.shape[0])[: num_batches * batch_size].reshape(num_batches, batch_size)

    def step(carry, batch_index):
        params, opt_state = carry
        xb, yb = x[batch_index], y[batch_index]
        loss, grads = jax.value_and_grad(lambda p: cross_entropy(net.full(p, xb), yb))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = apply_mask(optax.apply_updates(params, updates), mask)
        return (params, opt_state), loss

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), order)
    return params, opt_state, losses.mean()


@functools.partial(jax.jit, static_argnames=("net", "batch_size"))
def evaluate(net: SplitNetwork, params, x: jax.Array, y: jax.Array, batch_size: int = 2000):
    """Return (mean cross-entropy, accuracy) of ``params`` on (x [n, d], y [n])."""
    logits = jax.lax.map(lambda xb: net.full(params, xb), x, batch_size=batch_size)
    loss = cross_entropy(logits, y)
    accuracy = (logits.argmax(-1) == y).mean()
    return loss, accuracy


def fit(net: SplitNetwork, params, x_train, y_train, x_test, y_test, *, epochs: int, batch_size: int,
        learning_rate: float, key: jax.Array, mask=None, description: str = "train") -> TrainResult:
    """Train ``params`` with Adam and a cosine-decayed learning rate; log one line per epoch.

    Args:
        params: initial parameters (for fine-tuning, the pruned parameters).
        x_train, y_train, x_test, y_test: arrays as in ``jsplit.data.Dataset``.
        epochs, batch_size, learning_rate: optimisation settings.
        key: PRNG key for the minibatch order.
        mask: optional pruning mask; masked weights stay zero.
        description: label for the progress bar and log lines.
    """
    import time

    if x_train.shape[0] < batch_size:
        raise ValueError(f"train.batch_size={batch_size} exceeds the {x_train.shape[0]} training images")

    steps_per_epoch = x_train.shape[0] // batch_size
    schedule = optax.cosine_decay_schedule(learning_rate, decay_steps=max(1, epochs * steps_per_epoch))
    optimizer = optax.adam(schedule)
    params = apply_mask(params, mask)
    opt_state = optimizer.init(params)

    x_train, y_train = jnp.asarray(x_train), jnp.asarray(y_train)
    x_test, y_test = jnp.asarray(x_test), jnp.asarray(y_test)
    losses, accuracies = [], []
    start = time.perf_counter()

    with tqdm(range(epochs), desc=description, unit="epoch", leave=False) as bar:
        for epoch in bar:
            key, epoch_key = jax.random.split(key)
            params, opt_state, train_loss = train_epoch(net, optimizer, params, opt_state, mask,
                                                        x_train, y_train, epoch_key, batch_size)
            test_loss, test_accuracy = evaluate(net, params, x_test, y_test)
            losses.append(float(train_loss))
            accuracies.append(float(test_accuracy))
            bar.set_postfix(loss=f"{losses[-1]:.4f}", test_acc=f"{accuracies[-1]:.4f}")
            log.info("%s epoch %d/%d: train loss %.4f, test loss %.4f, test accuracy %.4f",
                     description, epoch + 1, epochs, losses[-1], float(test_loss), accuracies[-1])

    params = jax.tree.map(np.asarray, params)
    return TrainResult(params=params, train_loss=losses, test_accuracy=accuracies,
                       seconds=time.perf_counter() - start)
