"""Uniform quantization of weights and activations, and the quantized forward pass.

Weights are quantized symmetrically per output channel (the last axis of a
kernel): ``q = round(w / s) * s`` with ``s = max|w_c| / (2**(b-1) - 1)``, so a
b-bit integer and one float scale per channel represent the kernel exactly.
Biases stay at 32 bits, as integer inference keeps them in the 32-bit
accumulator. Activations are non-negative here (the input image, ReLU and
max-pooling outputs) and are quantized unsigned over ``[0, clip]``.

A model at weight precision ``b < 32`` runs integer arithmetic: the weights
and the input of every layer are b-bit integers. ``b = 32`` is float32
throughout. Quantization-aware training passes gradients through the rounding
unchanged (the straight-through estimator, Bengio et al., arXiv:1308.3432).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jsplit.config import FLOAT_BITS
from jsplit.model import SplitNetwork


def _straight_through(x: jax.Array, quantized: jax.Array) -> jax.Array:
    """``quantized`` in the forward pass, the identity's gradient in the backward pass."""
    return x + jax.lax.stop_gradient(quantized - x)


def quantize_kernel(kernel: jax.Array, bits) -> jax.Array:
    """Quantize a kernel [..., out] to ``bits`` (may be traced), symmetrically per output channel.

    Zero stays exactly zero, so pruned weights remain pruned; a channel whose
    weights are all zero stays zero.
    """
    levels = jnp.exp2(jnp.minimum(bits, 30).astype(jnp.float32) - 1.0) - 1.0
    reduce_axes = tuple(range(kernel.ndim - 1))
    scale = jnp.max(jnp.abs(kernel), axis=reduce_axes, keepdims=True) / levels
    safe = jnp.where(scale > 0, scale, 1.0)
    quantized = jnp.round(kernel / safe) * scale
    return jnp.where(bits >= FLOAT_BITS, kernel, quantized)


def quantize_weights(params, bits, straight_through: bool = False):
    """Quantize every kernel of a Flax parameter pytree to ``bits``; biases are left as they are."""

    def leaf(path, value):
        if getattr(path[-1], "key", None) != "kernel":
            return value
        quantized = quantize_kernel(value, bits)
        return _straight_through(value, quantized) if straight_through else quantized

    return jax.tree_util.tree_map_with_path(leaf, params)


def quantize_activation(h: jax.Array, bits, clip, straight_through: bool = False) -> jax.Array:
    """Quantize a non-negative activation uniformly, without a sign bit.

    ``q = round(min(h, clip) / step) * step`` with ``step = clip / (2**bits - 1)``,
    so ``bits`` bits represent the range [0, clip]. Bit-widths of 32 and above
    return ``h`` unchanged (float32 is sent as is). ``bits`` and ``clip`` may
    be traced scalars. With ``straight_through`` the gradient is the identity's.
    """
    levels = jnp.exp2(jnp.minimum(bits, 30).astype(jnp.float32)) - 1.0
    step = jnp.maximum(clip, jnp.finfo(jnp.float32).tiny) / levels
    quantized = jnp.round(jnp.clip(h, 0.0, clip) / step) * step
    if straight_through:
        quantized = _straight_through(h, quantized)
    return jnp.where(bits >= FLOAT_BITS, h, quantized)


def forward(net: SplitNetwork, params, x: jax.Array, weight_bits, clips: jax.Array, split=None, cut_bits=None,
            straight_through: bool = False) -> jax.Array:
    """Compute the logits of ``params`` at ``weight_bits``, optionally sending the activation at ``split`` at ``cut_bits``.

    Args:
        x: float32 [n, input_size] images in [0, 1].
        weight_bits: precision of weights and layer inputs; 32 is float32.
        clips: float32 [L] quantization range of the input of each layer
            (``compress.calibrate_clips``); the input image's range is 1.
        split, cut_bits: int scalars (may be traced). The activation crossing
            boundary ``split`` is quantized to ``cut_bits`` before the server
            continues; split 0 (the raw image) and split L are exact.
        straight_through: quantize with the straight-through gradient, for
            quantization-aware training.

    Returns:
        Logits [n, classes].
    """
    params = quantize_weights(params, weight_bits, straight_through)
    h = x
    for index in range(net.num_layers):
        if split is not None and index > 0:
            h = jnp.where(split == index, quantize_activation(h, cut_bits, clips[index], straight_through), h)
        h = quantize_activation(h, weight_bits, clips[index], straight_through)
        h = net.layer(params, h, index)
    return h
