"""Magnitude pruning, activation quantization at the cut, and the candidate set.

Pruning follows Han et al., "Learning both weights and connections for
efficient neural networks", NIPS 2015: the weights of smallest magnitude are
removed and the rest fine-tuned with the removed ones held at zero. Biases are
never pruned.

A candidate is (sparsity level, split layer, activation bits). Its test loss
and accuracy come from one jitted evaluation ``vmap``-ed over candidates.
"""

from __future__ import annotations

import dataclasses
import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np

from jsplit.model import SplitNetwork
from jsplit.train import cross_entropy, fit

log = logging.getLogger(__name__)

FLOAT_BITS = 32  # activation bit-width that sends float32 without quantization
RAW_PIXEL_BITS = 8  # split 0 sends the raw image at its native 8 bits per pixel
LABEL_BITS = 4  # the last split sends only the class label: ceil(log2(10)) bits


def _is_kernel(path) -> bool:
    return getattr(path[-1], "key", None) == "kernel"


def magnitude_mask(params, sparsity: float, scope: str = "global"):
    """Return a 0/1 mask pytree that removes the ``sparsity`` share of kernel weights of least magnitude.

    Args:
        params: Flax parameter pytree.
        sparsity: share of kernel weights to remove, in [0, 1).
        scope: ``"global"`` ranks all kernel weights together; ``"layer"``
            removes the same share from every kernel.

    Returns:
        A pytree shaped like ``params`` with float32 1.0 (keep) and 0.0 (pruned);
        biases are all ones. Weights tied with the largest pruned magnitude are
        pruned too.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if scope not in ("global", "layer"):
        raise ValueError(f"compression.scope must be 'global' or 'layer', got {scope!r}")

    kernels = [np.abs(np.asarray(leaf)) for path, leaf in jax.tree_util.tree_leaves_with_path(params) if _is_kernel(path)]
    global_threshold = _threshold(np.concatenate([k.ravel() for k in kernels]), sparsity)

    def leaf_mask(path, leaf):
        leaf = np.abs(np.asarray(leaf))
        if not _is_kernel(path):
            return np.ones_like(leaf, dtype=np.float32)
        threshold = global_threshold if scope == "global" else _threshold(leaf.ravel(), sparsity)
        return (leaf > threshold).astype(np.float32)

    return jax.tree_util.tree_map_with_path(leaf_mask, params)


def _threshold(magnitudes: np.ndarray, sparsity: float) -> float:
    """Largest pruned magnitude: the ``floor(sparsity * n)``-th smallest value (-inf when none is pruned)."""
    pruned = int(np.floor(sparsity * magnitudes.size))
    if pruned == 0:
        return -np.inf
    return float(np.partition(magnitudes, pruned - 1)[pruned - 1])


def kernel_sparsity(params) -> float:
    """Share of kernel weights that are exactly zero."""
    kernels = [np.asarray(leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(params) if _is_kernel(path)]
    return float(sum((k == 0).sum() for k in kernels) / sum(k.size for k in kernels))


@dataclasses.dataclass(frozen=True)
class PrunedModel:
    """One compression level: its sparsity, parameters and mask."""

    sparsity: float
    params: dict
    mask: dict


def prune_and_finetune(net: SplitNetwork, dense_params, data, *, sparsities, scope: str, epochs: int,
                       learning_rate: float, batch_size: int, key: jax.Array) -> list[PrunedModel]:
    """Prune progressively to each level of ``sparsities`` (ascending) and fine-tune each.

    Level n starts from level n-1's fine-tuned weights, so every mask contains
    the next one. Returns one PrunedModel per level, the dense model not included.
    """
    models, params = [], dense_params
    for level, sparsity in enumerate(sorted(sparsities)):
        mask = magnitude_mask(params, sparsity, scope)
        result = fit(net, params, data.x_train, data.y_train, data.x_test, data.y_test, epochs=epochs,
                     batch_size=batch_size, learning_rate=learning_rate, key=jax.random.fold_in(key, level),
                     mask=mask, description=f"fine-tune sparsity {sparsity:g}")
        params = result.params
        log.info("sparsity %.2f: %.4f of kernel weights are zero, test accuracy %.4f",
                 sparsity, kernel_sparsity(params), result.test_accuracy[-1])
        models.append(PrunedModel(sparsity=float(sparsity), params=params, mask=jax.tree.map(np.asarray, mask)))
    return models


def quantize_activation(h: jax.Array, bits, clip) -> jax.Array:
    """Uniform unsigned quantization of a non-negative activation.

    ``q = round(min(h, clip) / step) * step`` with ``step = clip / (2**bits - 1)``,
    so ``bits`` bits represent the range [0, clip]. Bit-widths of 32 and above
    return ``h`` unchanged (float32 is sent as is). ``bits`` and ``clip`` may
    be traced scalars.
    """
    levels = jnp.exp2(jnp.minimum(bits, 30).astype(jnp.float32)) - 1.0
    step = jnp.maximum(clip, jnp.finfo(jnp.float32).tiny) / levels
    quantized = jnp.round(jnp.clip(h, 0.0, clip) / step) * step
    return jnp.where(bits >= FLOAT_BITS, h, quantized)


def calibrate_clips(net: SplitNetwork, params, x: jax.Array) -> np.ndarray:
    """Return the largest activation seen on ``x`` at each split 0..L-1 (float32 [L]).

    Split 0 (the input image) gets 1.0, the full pixel range.
    """
    clips, h = [1.0], jnp.asarray(x)
    for index in range(net.num_layers - 1):
        h = net.layer(params, h, index)
        clips.append(float(h.max()))
    return np.asarray(clips, np.float32)


def forward_with_cut(net: SplitNetwork, params, x: jax.Array, split, bits, clips: jax.Array) -> jax.Array:
    """Full forward pass with the activation at ``split`` quantized to ``bits``.

    Args:
        x: float32 [n, input_size]. split, bits: int scalars (may be traced).
        clips: float32 [L] quantization range per split 0..L-1.

    Returns:
        Logits [n, classes]. Split 0 and split L send exact values, so no
        quantization happens there.
    """
    h = x
    for index in range(net.num_layers):
        if index > 0:
            h = jnp.where(split == index, quantize_activation(h, bits, clips[index]), h)
        h = net.layer(params, h, index)
    return h


@dataclasses.dataclass(frozen=True)
class CandidateGrid:
    """The candidate set, one entry per candidate (arrays of length K).

    Attributes:
        model_index: index into the list of compression levels (0 is dense).
        sparsity: kernel sparsity of the model, in [0, 1).
        split: split layer l in 0..L.
        activation_bits: bits per element of what is sent: 8 at split 0 (raw
            pixels), 4 at split L (one label of 4 bits), else the quantization width.
    """

    model_index: np.ndarray
    sparsity: np.ndarray
    split: np.ndarray
    activation_bits: np.ndarray

    def __len__(self) -> int:
        return len(self.split)


def candidate_grid(sparsities, num_layers: int, activation_bits) -> CandidateGrid:
    """Enumerate every (sparsity, split, activation bits); split 0 and L have one entry per sparsity.

    ``sparsities`` lists the levels in model order, the dense model (0.0) first.
    """
    rows = []
    for model_index, sparsity in enumerate(sparsities):
        for split in range(num_layers + 1):
            if split == 0:
                widths = [RAW_PIXEL_BITS]
            elif split == num_layers:
                widths = [LABEL_BITS]
            else:
                widths = sorted(set(int(b) for b in activation_bits), reverse=True)
            rows.extend((model_index, sparsity, split, bits) for bits in widths)

    model_index, sparsity, split, bits = (np.asarray(column) for column in zip(*rows))
    return CandidateGrid(model_index.astype(np.int32), sparsity.astype(np.float64),
                         split.astype(np.int32), bits.astype(np.int32))


@functools.partial(jax.jit, static_argnames=("net", "batch_size"))
def _evaluate_candidates(net, stacked_params, stacked_clips, model_index, split, bits, x, y, batch_size):
    def one(model, cut, width):
        params = jax.tree.map(lambda leaf: leaf[model], stacked_params)
        logits = jax.lax.map(lambda xb: forward_with_cut(net, params, xb, cut, width, stacked_clips[model]),
                             x, batch_size=batch_size)
        return cross_entropy(logits, y), (logits.argmax(-1) == y).mean()

    return jax.vmap(one)(model_index, split, bits)


def evaluate_candidates(net: SplitNetwork, models: list[dict], clips: np.ndarray, grid: CandidateGrid,
                        x_test, y_test, batch_size: int | None = None,
                        memory_budget_bytes: float = 2**30) -> tuple[np.ndarray, np.ndarray]:
    """Test loss (nats) and accuracy (fraction) of every candidate, each float64 [K].

    Args:
        models: parameter pytrees, one per compression level (index = model_index).
        clips: float32 [levels, L] quantization ranges from ``calibrate_clips``.
        batch_size: test images per step; None sizes it so that the widest
            activation of all candidates at once, three times over, fits
            ``memory_budget_bytes``.
    """
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *models)

    # Candidates that send float32, the raw input or the label all compute their model's own function, so
    # each distinct (model, split, bits) with a quantized cut is evaluated once, and each model once more.
    exact = (grid.activation_bits >= FLOAT_BITS) | (grid.split == 0) | (grid.split == net.num_layers)
    rows = np.stack([grid.model_index, np.where(exact, 0, grid.split), np.where(exact, FLOAT_BITS,
                                                                                grid.activation_bits)], axis=1)
    distinct, inverse = np.unique(rows, axis=0, return_inverse=True)

    if batch_size is None:
        widest = max(net.boundary_sizes)
        batch_size = max(1, int(memory_budget_bytes // (3 * 4 * len(distinct) * widest)))
    batch_size = min(batch_size, len(x_test))
    loss, accuracy = _evaluate_candidates(net, stacked, jnp.asarray(clips), *(jnp.asarray(distinct[:, i], jnp.int32)
                                                                             for i in range(3)),
                                          jnp.asarray(x_test), jnp.asarray(y_test), batch_size)
    inverse = inverse.reshape(-1)
    return np.asarray(loss, np.float64)[inverse], np.asarray(accuracy, np.float64)[inverse]
