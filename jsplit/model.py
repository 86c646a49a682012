"""Flax networks whose forward pass can be cut at every layer boundary.

Split layer ``l`` means the device runs layers ``1..l`` and sends the output of
layer ``l`` (after its activation function); ``l = 0`` sends the raw input and
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


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """Static facts about one layer, enough to count its cost.

    Attributes:
        name: parameter collection name, e.g. ``"dense1"``.
        input_size: elements of the layer's input activation.
        output_size: elements of the layer's output activation.
        uses_per_weight: multiply-accumulates each kernel weight takes part in
            per inference (1 for a dense layer).
    """

    name: str
    input_size: int
    output_size: int
    uses_per_weight: int = 1


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


def build_network(name: str, features: Sequence[int], input_size: int = 784) -> SplitNetwork:
    """Build the network named in the configuration (``model.name``)."""
    if name != "lenet300100":
        raise ValueError(f"model.name must be lenet300100, got {name!r}")

    sizes = (input_size, *features)
    layers = tuple(LayerSpec(f"dense{i + 1}", sizes[i], sizes[i + 1]) for i in range(len(features)))
    return SplitNetwork(name=name, module=LeNet300100(tuple(features)), input_size=input_size, layers=layers)
