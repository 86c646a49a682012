"""Pruning, weight quantization, activation quantization at the cut, and the candidate set.

Unstructured pruning follows Han et al., "Learning both weights and
connections for efficient neural networks", NIPS 2015: the weights of
smallest magnitude are removed and the rest fine-tuned with the removed ones
held at zero, in rounds of increasing sparsity. Structured pruning removes
whole neurons and convolution channels of least L2 norm (Li et al., "Pruning
filters for efficient ConvNets", ICLR 2017), which shrinks the activation that
is sent and the MACs of the next layer. Weight quantization and its
quantization-aware fine-tuning are in ``jsplit.quantize``.

A compression level is (pruning, sparsity, weight bits); a candidate is
(level, split layer, activation bits). Test loss and accuracy of every
candidate and every training seed come from one jitted evaluation ``vmap``-ed
over candidates and seeds.
"""

from __future__ import annotations

import dataclasses
import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np

from jsplit import quantize
from jsplit.model import SplitNetwork
from jsplit.quantize import FLOAT_BITS, quantize_activation
from jsplit.train import cross_entropy, fit, seed_slice, stack_seeds

log = logging.getLogger(__name__)

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


def structured_mask(net: SplitNetwork, params, fraction: float):
    """Return a 0/1 mask pytree that removes the ``fraction`` of units of least L2 norm from every hidden layer.

    A unit is a neuron of a dense layer or an output channel of a
    convolution; its norm is that of its incoming kernel weights. A removed
    unit loses its kernel column and its bias, so it outputs exactly zero, and
    the next weighted layer loses the weights that read it. The output layer
    keeps all its units. ``floor(fraction * units)`` units go in each layer;
    ties are broken by unit index.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"structured sparsity must be in [0, 1), got {fraction}")
    tree = params["params"]
    mask = jax.tree.map(lambda leaf: np.ones(np.shape(leaf), np.float32), params)
    weighted = [index for index, layer in enumerate(net.layers) if layer.weighted]
    alive_in = None  # alive channels of the activation entering the current layer
    for index in weighted:
        layer, leaves = net.layers[index], mask["params"][net.layers[index].name]
        kernel = np.asarray(tree[layer.name]["kernel"])
        if alive_in is not None:
            if kernel.ndim == 4:  # [K, K, C_in, C_out]
                leaves["kernel"] *= alive_in[None, None, :, None]
            else:  # [inputs, units]; flattened inputs keep the channel as the fastest axis
                leaves["kernel"] *= alive_in[np.arange(kernel.shape[0]) % alive_in.size][:, None]
        if index == weighted[-1]:
            break
        norms = np.sqrt(np.square(kernel * leaves["kernel"]).reshape(-1, kernel.shape[-1]).sum(axis=0))
        alive = np.ones(kernel.shape[-1], np.float32)
        alive[np.argsort(norms, kind="stable")[: int(np.floor(fraction * kernel.shape[-1]))]] = 0.0
        leaves["kernel"] *= alive
        leaves["bias"] *= alive
        alive_in = alive
    return mask


def alive_channels(net: SplitNetwork, params) -> np.ndarray:
    """Count the channels of each boundary activation 0..L that are not identically zero, int64 [L + 1].

    A unit of a weighted layer is dead when its kernel column and its bias are
    all zero (its output is ReLU(0) = 0 for every input); pooling keeps the
    channels of its input. The input image (boundary 0) and the logits count
    in full.
    """
    tree = params["params"]
    counts = [net.input_size]
    for index, layer in enumerate(net.layers):
        if index == net.num_layers - 1:
            counts.append(layer.output_channels)
        elif layer.weighted:
            kernel, bias = np.asarray(tree[layer.name]["kernel"]), np.asarray(tree[layer.name]["bias"])
            live = (kernel.reshape(-1, kernel.shape[-1]) != 0).any(axis=0) | (bias != 0)
            counts.append(int(live.sum()))
        else:
            counts.append(counts[-1])
    return np.asarray(counts, np.int64)


@dataclasses.dataclass(frozen=True)
class Level:
    """The recipe of one compressed model.

    Attributes:
        sparsity: nominal share removed, of all kernel weights (unstructured)
            or of the units of every hidden layer (structured).
        structured: whole neurons and channels were removed.
        weight_bits: weight precision; 32 is float32.
    """

    sparsity: float
    structured: bool
    weight_bits: int

    @property
    def label(self) -> str:
        pruning = f"{'structured' if self.structured else 'unstructured'} {self.sparsity:g}" if self.sparsity else "dense"
        return f"{pruning} / {'float32' if self.weight_bits >= FLOAT_BITS else f'int{self.weight_bits}'}"


@dataclasses.dataclass(frozen=True)
class PrunedModel:
    """One pruning level: its nominal sparsity, parameters and mask, stacked over seeds."""

    sparsity: float
    structured: bool
    params: dict
    mask: dict


def _seed_masks(make_mask, params):
    seeds = jax.tree.leaves(params)[0].shape[0]
    return jax.tree.map(np.asarray, stack_seeds([make_mask(seed_slice(params, s)) for s in range(seeds)]))


def prune_and_finetune(net: SplitNetwork, dense_params, data, *, sparsities, scope: str, epochs: int,
                       learning_rate: float, batch_size: int, key: jax.Array, structured: bool = False,
                       rounds: int = 1, shift_px: int = 0) -> list[PrunedModel]:
    """Prune progressively to each level of ``sparsities`` (ascending), fine-tuning after every round.

    Level n is reached from level n-1 in ``rounds`` rounds whose kept share
    falls geometrically, each pruned by magnitude (or by unit norm when
    ``structured``) and fine-tuned for ``epochs`` epochs, so every mask
    contains the next one.

    Args:
        dense_params: the trained dense model, stacked over seeds [S, ...].
        sparsities: unstructured: shares of kernel weights to remove;
            structured: shares of hidden units to remove per layer.
        scope: unstructured pruning threshold, ``"global"`` or ``"layer"``.

    Returns:
        One PrunedModel per level, the dense model not included.
    """
    models, params, previous = [], dense_params, 0.0
    for level, sparsity in enumerate(sorted(sparsities)):
        for round_index in range(rounds):
            kept = (1.0 - previous) * ((1.0 - sparsity) / (1.0 - previous)) ** ((round_index + 1) / rounds)
            target = sparsity if round_index == rounds - 1 else 1.0 - kept
            if structured:
                mask = _seed_masks(lambda p: structured_mask(net, p, target), params)
            else:
                mask = _seed_masks(lambda p: magnitude_mask(p, target, scope), params)
            kind = "structured" if structured else "sparsity"
            result = fit(net, params, data.x_train, data.y_train, data.x_test, data.y_test, epochs=epochs,
                         batch_size=batch_size, learning_rate=learning_rate,
                         key=jax.random.fold_in(key, level * rounds + round_index), mask=mask,
                         description=f"fine-tune {kind} {target:.3g}", stacked=True, shift_px=shift_px)
            params = result.params
        previous = sparsity
        log.info("%s %.2f: %.4f of kernel weights are zero, test accuracy %.4f",
                 "structured" if structured else "sparsity", sparsity,
                 np.mean([kernel_sparsity(seed_slice(params, s)) for s in range(len(result.seed_accuracy))]),
                 result.test_accuracy[-1])
        models.append(PrunedModel(sparsity=float(sparsity), structured=structured, params=params, mask=mask))
    return models


def quantize_level(net: SplitNetwork, pruned: PrunedModel, clips: np.ndarray, bits: int, data, *, epochs: int,
                   learning_rate: float, batch_size: int, key: jax.Array, shift_px: int = 0) -> dict:
    """Quantize a pruned model's weights to ``bits``, after ``epochs`` of quantization-aware fine-tuning.

    Args:
        clips: float32 [S, L] activation ranges per seed (``calibrate_clips``).
        epochs: 0 quantizes after training (post-training quantization).

    Returns:
        The quantized parameters stacked over seeds, with pruned weights still zero.
    """
    params = pruned.params
    if epochs > 0:
        name = f"{'structured' if pruned.structured else 'sparsity'} {pruned.sparsity:g}" if pruned.sparsity else "dense"
        result = fit(net, params, data.x_train, data.y_train, data.x_test, data.y_test, epochs=epochs,
                     batch_size=batch_size, learning_rate=learning_rate, key=key, mask=pruned.mask,
                     description=f"quantization-aware int{bits}, {name}", stacked=True, shift_px=shift_px,
                     weight_bits=bits, clips=clips)
        params = result.params
    return jax.tree.map(np.asarray, jax.vmap(lambda p: quantize.quantize_weights(p, bits))(params))


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
    """Float32 forward pass with the activation at ``split`` quantized to ``bits`` (see ``quantize.forward``)."""
    return quantize.forward(net, params, x, FLOAT_BITS, clips, split, bits)


@dataclasses.dataclass(frozen=True)
class CandidateGrid:
    """The candidate set, one entry per candidate (arrays of length K).

    Attributes:
        model_index: index into the list of compression levels (0 is dense float32).
        sparsity: nominal sparsity of the level, in [0, 1).
        structured: the level removed whole neurons and channels.
        weight_bits: weight precision of the level; 32 is float32.
        split: split layer l in 0..L.
        activation_bits: bits per element of what is sent: 8 at split 0 (raw
            pixels), 4 at split L (one label of 4 bits), else the quantization width.
    """

    model_index: np.ndarray
    sparsity: np.ndarray
    structured: np.ndarray
    weight_bits: np.ndarray
    split: np.ndarray
    activation_bits: np.ndarray

    def __len__(self) -> int:
        return len(self.split)


def candidate_grid(levels, num_layers: int, activation_bits) -> CandidateGrid:
    """Enumerate every (level, split, activation bits); split 0 and L have one entry per level.

    ``levels`` lists the compression levels in model order, the dense float32
    model first: Level objects, or plain sparsities for unstructured float32 levels.
    At inner splits a float32 level sends at every width of ``activation_bits``.
    A level with b-bit integer weights already has b-bit activations on the
    device, so it sends at b bits (losslessly) or at the narrower widths of
    ``activation_bits``; a wider payload would carry no more information.
    """
    levels = [level if isinstance(level, Level) else Level(float(level), False, FLOAT_BITS) for level in levels]
    rows = []
    for model_index, level in enumerate(levels):
        for split in range(num_layers + 1):
            if split == 0:
                widths = [RAW_PIXEL_BITS]
            elif split == num_layers:
                widths = [LABEL_BITS]
            elif level.weight_bits >= FLOAT_BITS:
                widths = sorted({int(b) for b in activation_bits}, reverse=True)
            else:
                widths = sorted({int(b) for b in activation_bits if b < level.weight_bits} | {level.weight_bits},
                                reverse=True)
            rows.extend((model_index, level.sparsity, level.structured, level.weight_bits, split, bits)
                        for bits in widths)

    model_index, sparsity, structured, weight_bits, split, bits = (np.asarray(column) for column in zip(*rows))
    return CandidateGrid(model_index.astype(np.int32), sparsity.astype(np.float64), structured.astype(bool),
                         weight_bits.astype(np.int32), split.astype(np.int32), bits.astype(np.int32))


@functools.partial(jax.jit, static_argnames=("net", "batch_size"))
def _evaluate_candidates(net, flat_params, flat_clips, entry, weight_bits, split, bits, x, y, batch_size):
    def one(index, precision, cut, width):
        params = jax.tree.map(lambda leaf: leaf[index], flat_params)
        logits = jax.lax.map(lambda xb: quantize.forward(net, params, xb, precision, flat_clips[index], cut, width),
                             x, batch_size=batch_size)
        return cross_entropy(logits, y), (logits.argmax(-1) == y).mean()

    return jax.vmap(one)(entry, weight_bits, split, bits)


def evaluate_candidates(net: SplitNetwork, models: list[dict], clips: np.ndarray, grid: CandidateGrid,
                        x_test, y_test, batch_size: int | None = None, memory_budget_bytes: float = 2**30,
                        stacked: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Compute the test loss (nats) and accuracy (fraction) of every candidate and seed, float64 [K, S].

    Args:
        models: parameter pytrees, one per compression level (index =
            model_index), each stacked over S seeds when ``stacked``.
        clips: float32 [levels, L] (or [levels, S, L] when stacked) activation
            ranges from ``calibrate_clips``.
        batch_size: test images per step; None sizes it so that the widest
            activation of all evaluations at once, three times over, fits
            ``memory_budget_bytes``.

    Returns:
        (loss, accuracy), float64 [K, S] when stacked, else [K].
    """
    if not stacked:
        models, clips = [stack_seeds([params]) for params in models], np.asarray(clips)[:, None, :]
    seeds = jax.tree.leaves(models[0])[0].shape[0]
    flat = jax.tree.map(lambda *leaves: jnp.concatenate(leaves), *models)  # [levels * S, ...]
    flat_clips = jnp.asarray(np.asarray(clips, np.float32).reshape(-1, net.num_layers))

    # Candidates that send the raw input, the label, float32 or a level's own integer width all compute their
    # model's own function, so each distinct (model, split, bits) with a lossy cut is evaluated once, and
    # each model once more.
    exact = ((grid.activation_bits >= np.minimum(grid.weight_bits, FLOAT_BITS)) | (grid.split == 0)
             | (grid.split == net.num_layers))
    rows = np.stack([grid.model_index, np.where(exact, 0, grid.split), np.where(exact, FLOAT_BITS,
                                                                                grid.activation_bits)], axis=1)
    distinct, inverse = np.unique(rows, axis=0, return_inverse=True)
    model_bits = np.zeros(int(grid.model_index.max()) + 1, np.int32)
    model_bits[grid.model_index] = grid.weight_bits

    # One evaluation per (distinct row, seed): entry = model * S + seed.
    entry = (distinct[:, 0, None] * seeds + np.arange(seeds)[None, :]).reshape(-1)
    repeat = np.repeat(distinct, seeds, axis=0)
    if batch_size is None:
        widest = max(net.boundary_sizes)
        batch_size = max(1, int(memory_budget_bytes // (3 * 4 * len(entry) * widest)))
    batch_size = min(batch_size, len(x_test))
    loss, accuracy = _evaluate_candidates(
        net, flat, flat_clips, jnp.asarray(entry, jnp.int32), jnp.asarray(model_bits[repeat[:, 0]]),
        jnp.asarray(repeat[:, 1], jnp.int32), jnp.asarray(repeat[:, 2], jnp.int32), jnp.asarray(x_test),
        jnp.asarray(y_test), batch_size)
    inverse = inverse.reshape(-1)
    loss = np.asarray(loss, np.float64).reshape(len(distinct), seeds)[inverse]
    accuracy = np.asarray(accuracy, np.float64).reshape(len(distinct), seeds)[inverse]
    return (loss, accuracy) if stacked else (loss[:, 0], accuracy[:, 0])
