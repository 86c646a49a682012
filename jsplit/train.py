"""Train and evaluate a SplitNetwork with optax, for one seed or several at once.

One jitted call runs a whole epoch as a ``lax.scan`` over minibatches, so the
host dispatches once per epoch. Several seeds train in the same call: the
epoch is ``vmap``-ed over a leading seed axis of the parameters, optimizer
state, mask and PRNG key, while the data are shared. An optional mask pytree
(1 keeps a weight, 0 prunes it) is applied after every update, so pruned
weights stay exactly zero during fine-tuning. With ``weight_bits < 32`` the
loss is that of the quantized network (quantization-aware training with the
straight-through estimator, see ``jsplit.quantize``).
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

from jsplit import quantize
from jsplit.model import SplitNetwork

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """Trained parameters and the per-epoch history.

    Attributes:
        params: Flax parameter pytree (with a leading seed axis when trained stacked).
        train_loss: mean training cross-entropy per epoch [epochs], averaged over seeds.
        test_accuracy: test accuracy per epoch [epochs], fraction in [0, 1], averaged over seeds.
        seed_accuracy: final test accuracy of each seed [seeds].
        seconds: wall-clock training time.
    """

    params: dict
    train_loss: list[float]
    test_accuracy: list[float]
    seed_accuracy: list[float]
    seconds: float


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy in nats; logits [n, classes], labels int [n]."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def apply_mask(params, mask):
    """Zero the pruned weights; ``mask`` is None or a pytree shaped like ``params``."""
    if mask is None:
        return params
    return jax.tree.map(lambda p, m: p * m, params, mask)


def logits_fn(net: SplitNetwork, params, x: jax.Array, weight_bits: int, clips, straight_through: bool = False):
    """Compute the logits of ``params`` on x [n, input_size]: float32 for ``weight_bits >= 32``, else the quantized network."""
    if weight_bits >= quantize.FLOAT_BITS:
        return net.full(params, x)
    return quantize.forward(net, params, x, weight_bits, clips, straight_through=straight_through)


def random_shift(x: jax.Array, key: jax.Array, shift_px: int) -> jax.Array:
    """Translate each square image of x [n, side*side] by up to ``shift_px`` pixels per axis, filling with zeros."""
    side = int(round(x.shape[-1] ** 0.5))
    images = jnp.pad(x.reshape(-1, side, side), ((0, 0), (shift_px, shift_px), (shift_px, shift_px)))
    offsets = jax.random.randint(key, (images.shape[0], 2), 0, 2 * shift_px + 1)
    crop = jax.vmap(lambda image, offset: jax.lax.dynamic_slice(image, (offset[0], offset[1]), (side, side)))
    return crop(images, offsets).reshape(x.shape)


def adam_cosine(learning_rate: float, decay_steps: int) -> optax.GradientTransformation:
    """Build Adam with a cosine decay of ``learning_rate`` to zero over ``decay_steps`` updates."""
    return optax.adam(optax.cosine_decay_schedule(learning_rate, decay_steps=max(1, decay_steps)))


@functools.partial(jax.jit, static_argnames=("net", "learning_rate", "decay_steps", "batch_size", "shift_px",
                                             "weight_bits"))
def train_epoch(net: SplitNetwork, learning_rate: float, decay_steps: int, params, opt_state, mask,
                x: jax.Array, y: jax.Array, key: jax.Array, batch_size: int, shift_px: int = 0,
                weight_bits: int = 32, clips=None):
    """Run one epoch of minibatch training for every seed, over a random permutation of (x, y) per seed.

    The optimizer is ``adam_cosine(learning_rate, decay_steps)``. It is built
    here from those two numbers, so every call with the same settings reuses
    one compiled epoch, while an optax object passed in would differ per call.

    Args:
        params, opt_state, mask: pytrees whose leaves have a leading seed axis [S, ...];
            mask may be None.
        x: float32 [n, input_size] training images; y: int32 [n] labels.
        key: PRNG keys [S] for the permutations and the shifts. The last
            n % batch_size images of each permutation are skipped this epoch.
        shift_px: random translation of every training image by up to this
            many pixels per axis (0: none).
        weight_bits, clips: train the network quantized to ``weight_bits``
            with activation ranges clips [S, L] (see ``logits_fn``).

    Returns:
        (params, opt_state, mean training loss of the epoch [S]).
    """
    num_batches = x.shape[0] // batch_size
    optimizer = adam_cosine(learning_rate, decay_steps)

    def one_seed(params, opt_state, mask, key, clips):
        order_key, shift_key = jax.random.split(key)
        order = jax.random.permutation(order_key, x.shape[0])[: num_batches * batch_size]

        def step(carry, batch):
            params, opt_state = carry
            index, batch_indices = batch
            xb, yb = x[batch_indices], y[batch_indices]
            if shift_px:
                xb = random_shift(xb, jax.random.fold_in(shift_key, index), shift_px)

            def loss_fn(p):
                return cross_entropy(logits_fn(net, p, xb, weight_bits, clips, straight_through=True), yb)

            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = apply_mask(optax.apply_updates(params, updates), mask)
            return (params, opt_state), loss

        batches = (jnp.arange(num_batches), order.reshape(num_batches, batch_size))
        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), batches)
        return params, opt_state, losses.mean()

    axes = (0, 0, None if mask is None else 0, 0, None if clips is None else 0)
    return jax.vmap(one_seed, in_axes=axes)(params, opt_state, mask, key, clips)


@functools.partial(jax.jit, static_argnames=("net", "batch_size", "weight_bits"))
def evaluate(net: SplitNetwork, params, x: jax.Array, y: jax.Array, batch_size: int = 2000, weight_bits: int = 32,
             clips=None):
    """Return (mean cross-entropy, accuracy) of one model ``params`` on (x [n, d], y [n])."""
    logits = jax.lax.map(lambda xb: logits_fn(net, params, xb, weight_bits, clips), x, batch_size=batch_size)
    loss = cross_entropy(logits, y)
    accuracy = (logits.argmax(-1) == y).mean()
    return loss, accuracy


def stack_seeds(trees):
    """Stack a list of pytrees along a new leading seed axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def seed_slice(tree, seed: int):
    """Select the pytree of one seed from a stacked pytree."""
    return jax.tree.map(lambda leaf: leaf[seed], tree)


def fit(net: SplitNetwork, params, x_train, y_train, x_test, y_test, *, epochs: int, batch_size: int,
        learning_rate: float, key: jax.Array, mask=None, description: str = "train", stacked: bool = False,
        shift_px: int = 0, weight_bits: int = 32, clips=None) -> TrainResult:
    """Train ``params`` with Adam and a cosine-decayed learning rate; log one line per epoch.

    Args:
        params: initial parameters (for fine-tuning, the pruned parameters).
        x_train, y_train, x_test, y_test: arrays as in ``jsplit.data.Dataset``.
        epochs, batch_size, learning_rate: optimisation settings.
        key: PRNG key for the minibatch order and the shifts (split per seed).
        mask: optional pruning mask; masked weights stay zero.
        description: label for the progress bar and log lines.
        stacked: params, mask and clips carry a leading seed axis and all
            seeds train together; otherwise they describe one model.
        shift_px: random translation of training images (data augmentation).
        weight_bits, clips: quantization-aware training at ``weight_bits``
            with activation ranges clips ([L], or [S, L] when stacked).
    """
    import time

    if x_train.shape[0] < batch_size:
        raise ValueError(f"train.batch_size={batch_size} exceeds the {x_train.shape[0]} training images")
    if not stacked:
        params, mask, clips = (None if tree is None else stack_seeds([tree]) for tree in (params, mask, clips))
    seeds = jax.tree.leaves(params)[0].shape[0]

    decay_steps = epochs * (x_train.shape[0] // batch_size)
    params = apply_mask(params, mask)
    opt_state = jax.vmap(adam_cosine(learning_rate, decay_steps).init)(params)
    clips = None if clips is None else jnp.asarray(clips, jnp.float32)

    x_train, y_train = jnp.asarray(x_train), jnp.asarray(y_train)
    x_test, y_test = jnp.asarray(x_test), jnp.asarray(y_test)
    evaluate_seeds = jax.vmap(evaluate, in_axes=(None, 0, None, None, None, None, None if clips is None else 0))
    losses, accuracies, seed_accuracy = [], [], []
    start = time.perf_counter()

    with tqdm(range(epochs), desc=description, unit="epoch", leave=False) as bar:
        for epoch in bar:
            key, epoch_key = jax.random.split(key)
            params, opt_state, train_loss = train_epoch(
                net, learning_rate, decay_steps, params, opt_state, mask, x_train, y_train,
                jax.random.split(epoch_key, seeds), batch_size, shift_px, weight_bits, clips)
            test_loss, test_accuracy = evaluate_seeds(net, params, x_test, y_test, 2000, weight_bits, clips)
            seed_accuracy = [float(a) for a in np.asarray(test_accuracy)]
            losses.append(float(train_loss.mean()))
            accuracies.append(float(np.mean(seed_accuracy)))
            bar.set_postfix(loss=f"{losses[-1]:.4f}", test_acc=f"{accuracies[-1]:.4f}")
            log.info("%s epoch %d/%d: train loss %.4f, test loss %.4f, test accuracy %.4f%s", description, epoch + 1,
                     epochs, losses[-1], float(test_loss.mean()), accuracies[-1],
                     f" (std {np.std(seed_accuracy, ddof=1):.4f} over {seeds} seeds)" if seeds > 1 else "")

    params = jax.tree.map(np.asarray, params if stacked else seed_slice(params, 0))
    return TrainResult(params=params, train_loss=losses, test_accuracy=accuracies, seed_accuracy=seed_accuracy,
                       seconds=time.perf_counter() - start)
