"""Flax networks whose forward pass can be cut at every layer boundary.

Split layer ``l`` means the device runs layers ``1..l`` and sends the output of
layer ``l``, after its activation function. ``l = 0`` sends the raw input, and
``l = L`` runs the whole network on the device. For every ``l``,
``tail(params, head(params, x, l), l) == full(params, x)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class LeNet300100(nn.Module):
    """LeNet-300-100 (LeCun et al., Proc. IEEE 1998): fully connected 784-300-100-10.

    ``__call__(x, start, stop)`` applies layers ``start..stop-1`` (0-based) to
    ``x``, with ReLU after every layer but the last, which returns logits.
    """

    features: Sequence[int] = (300, 100, 10)

    def setup(self):
        self.layers = [nn.Dense(width, name=f"dense{i + 1}") for i, width in enumerate(self.features)]

    def __call__(self, x, start: int = 0, stop: int | None = None):
        stop = len(self.features) if stop is None else stop
        for i in range(start, stop):
            x = self.layers[i](x)
            if i < len(self.features) - 1:
                x = nn.relu(x)
        return x


class PatchConv(nn.Module):
    """A 'VALID' convolution with stride 1 computed as one matrix product over image patches.

    The kernel has the layout of ``flax.linen.Conv``, [K, K, C_in, C_out], so
    masks and per-output-channel quantization treat both modules alike. On
    XLA's CPU backend this trains LeNet-5 several times faster than
    ``lax.conv_general_dilated`` (``docs/compression.md`` has the measurement).
    """

    features: int
    kernel_size: int

    @nn.compact
    def __call__(self, x):  # x: [batch, H, W, C_in] -> [batch, H-K+1, W-K+1, C_out]
        k, channels = self.kernel_size, x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, channels, self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        height, width = x.shape[-3] - k + 1, x.shape[-2] - k + 1
        # Patch features in (row, column, channel) order, the row-major order of the kernel's first three axes.
        patches = jnp.concatenate([x[..., i:i + height, j:j + width, :] for i in range(k) for j in range(k)], axis=-1)
        return patches @ kernel.reshape(k * k * channels, self.features) + bias


def _max_pool2(x):
    """2x2 max-pooling with stride 2 of [batch, H, W, C] (H and W even), as a reshape and a max."""
    batch, height, width, channels = x.shape
    return x.reshape(batch, height // 2, 2, width // 2, 2, channels).max(axis=(2, 4))


class LeNet5(nn.Module):
    """A LeNet-5-style CNN (as in Han et al., NIPS 2015): conv 5x5 x20, max-pool 2, conv 5x5 x50, max-pool 2,
    dense 500, dense 10.

    Six layers, so six split points after the input: after each convolution
    (with its ReLU), after each pooling, and after the hidden dense layer.
    Activations cross layer boundaries flattened, [batch, elements], in
    height-width-channel order; the input is a flattened 28x28 image.
    """

    features: Sequence[int] = (20, 50, 500, 10)

    def setup(self):
        conv1, conv2, hidden, classes = self.features
        self.conv1 = PatchConv(conv1, 5)
        self.conv2 = PatchConv(conv2, 5)
        self.fc1 = nn.Dense(hidden)
        self.fc2 = nn.Dense(classes)

    def _layer(self, index: int, h):
        # Leading axes are kept as they are, so the layers also run on single images under vmap.
        lead = h.shape[:-1]
        conv1, conv2 = self.features[0], self.features[1]

        def image(height, channels):
            return h.reshape((-1, height, height, channels))

        def flat(y):
            return y.reshape(lead + (-1,))

        if index == 0:
            return flat(nn.relu(self.conv1(image(28, 1))))
        if index == 1:
            return flat(_max_pool2(image(24, conv1)))
        if index == 2:
            return flat(nn.relu(self.conv2(image(12, conv1))))
        if index == 3:
            return flat(_max_pool2(image(8, conv2)))
        if index == 4:
            return nn.relu(self.fc1(h))
        return self.fc2(h)

    def __call__(self, x, start: int = 0, stop: int | None = None):
        stop = 6 if stop is None else stop
        for index in range(start, stop):
            x = self._layer(index, x)
        return x


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """Static facts about one layer, enough to count its cost.

    Attributes:
        name: parameter collection name, e.g. ``"dense1"``.
        input_size: elements of the layer's input activation.
        output_size: elements of the layer's output activation.
        uses_per_weight: multiply-accumulates each kernel weight takes part in
            per inference: 1 for a dense layer, H_out * W_out for a convolution.
        biases: bias parameters (the output channels of a convolution); None
            means one per output element, as in a dense layer.
        weighted: False for a layer without parameters (pooling).
        channels: channels of the output activation, whose elements are
            stored with the channel as the fastest axis; None means one per
            element, as in a dense layer.
    """

    name: str
    input_size: int
    output_size: int
    uses_per_weight: int = 1
    biases: int | None = None
    weighted: bool = True
    channels: int | None = None

    @property
    def output_channels(self) -> int:
        return self.output_size if self.channels is None else self.channels

    @property
    def bias_count(self) -> int:
        if not self.weighted:
            return 0
        return self.output_size if self.biases is None else self.biases


@dataclasses.dataclass(frozen=True)
class SplitNetwork:
    """A Flax module with the split points and layer facts jsplit needs.

    Attributes:
        name: model name from the configuration.
        module: the Flax module; its ``__call__`` takes ``(x, start, stop)``.
        input_size: elements of one flattened input image.
        layers: one LayerSpec per layer, in forward order.
    """

    name: str
    module: nn.Module
    input_size: int
    layers: tuple[LayerSpec, ...]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def boundary_sizes(self) -> tuple[int, ...]:
        """Elements of the activation at each split 0..L (the input at split 0)."""
        return (self.input_size,) + tuple(layer.output_size for layer in self.layers)

    def init(self, key: jax.Array):
        return self.module.init(key, jnp.zeros((1, self.input_size), jnp.float32))

    def head(self, params, x: jax.Array, split: int) -> jax.Array:
        """Run layers 1..split on the device: [batch, input_size] -> [batch, boundary_sizes[split]]."""
        return self.module.apply(params, x, 0, split)

    def tail(self, params, h: jax.Array, split: int) -> jax.Array:
        """Run layers split+1..L on the server: [batch, boundary_sizes[split]] -> logits [batch, classes]."""
        return self.module.apply(params, h, split, None)

    def layer(self, params, h: jax.Array, index: int) -> jax.Array:
        """Apply the single layer ``index`` (0-based) with its activation function."""
        return self.module.apply(params, h, index, index + 1)

    def full(self, params, x: jax.Array) -> jax.Array:
        return self.module.apply(params, x)


MODELS = ("lenet300100", "lenet5")


def build_network(name: str, features: Sequence[int], input_size: int = 784) -> SplitNetwork:
    """Build the network named in the configuration (``model.name``)."""
    if name not in MODELS:
        raise ValueError(f"model.name must be one of {', '.join(MODELS)}, got {name!r}")
    if name == "lenet5":
        return _build_lenet5(tuple(features), input_size)

    sizes = (input_size, *features)
    layers = tuple(LayerSpec(f"dense{i + 1}", sizes[i], sizes[i + 1]) for i in range(len(features)))
    return SplitNetwork(name=name, module=LeNet300100(tuple(features)), input_size=input_size, layers=layers)


def _build_lenet5(features: tuple[int, ...], input_size: int) -> SplitNetwork:
    if input_size != 784 or len(features) != 4:
        raise ValueError(f"lenet5 takes 28x28 images and model.features [conv1, conv2, hidden, classes], "
                         f"got {input_size} inputs and features {list(features)}")
    conv1, conv2, hidden, classes = features
    layers = (
        LayerSpec("conv1", 784, 24 * 24 * conv1, uses_per_weight=24 * 24, biases=conv1, channels=conv1),
        LayerSpec("pool1", 24 * 24 * conv1, 12 * 12 * conv1, weighted=False, channels=conv1),
        LayerSpec("conv2", 12 * 12 * conv1, 8 * 8 * conv2, uses_per_weight=8 * 8, biases=conv2, channels=conv2),
        LayerSpec("pool2", 8 * 8 * conv2, 4 * 4 * conv2, weighted=False, channels=conv2),
        LayerSpec("fc1", 4 * 4 * conv2, hidden),
        LayerSpec("fc2", hidden, classes),
    )
    return SplitNetwork(name="lenet5", module=LeNet5(features), input_size=input_size, layers=layers)
