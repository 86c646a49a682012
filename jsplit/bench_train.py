"""Time LeNet-5 training with jsplit's patch convolution against XLA's convolution, side by side.

``python -m jsplit.bench_train [--images N] [--repeats R]`` trains the same
parameters for one pass over N random images (batch 128, Adam) with each of
two forward passes that compute the same function. The first is jsplit's
LeNet5: convolutions as one matrix product over image patches, pooling as a
reshape and a max. The reference uses ``lax.conv_general_dilated`` and
``flax.linen.max_pool``. The script prints the median seconds of each and
their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jsplit.model import build_network
from jsplit.train import cross_entropy

BATCH = 128


def reference_forward(params, x):
    """LeNet-5 logits from XLA's convolution and reduce-window pooling; same parameters as jsplit's LeNet5."""
    p = params["params"]
    numbers = ("NHWC", "HWIO", "NHWC")

    def conv(h, layer):
        out = jax.lax.conv_general_dilated(h, p[layer]["kernel"], (1, 1), "VALID", dimension_numbers=numbers)
        return nn.relu(out + p[layer]["bias"])

    h = x.reshape(-1, 28, 28, 1)
    h = nn.max_pool(conv(h, "conv1"), (2, 2), strides=(2, 2))
    h = nn.max_pool(conv(h, "conv2"), (2, 2), strides=(2, 2)).reshape(x.shape[0], -1)
    h = nn.relu(h @ p["fc1"]["kernel"] + p["fc1"]["bias"])
    return h @ p["fc2"]["kernel"] + p["fc2"]["bias"]


def epoch_fn(forward):
    """Build a jitted pass of Adam over x [n, 784], y [n] in batches of 128 that uses ``forward(params, x)``."""
    optimizer = optax.adam(1e-3)

    @jax.jit
    def run(params, x, y):
        def step(carry, batch):
            params, state = carry
            loss, grads = jax.value_and_grad(lambda p: cross_entropy(forward(p, x[batch]), y[batch]))(params)
            updates, state = optimizer.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), loss

        batches = jnp.arange(x.shape[0] // BATCH * BATCH).reshape(-1, BATCH)
        (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), batches)
        return params, losses.mean()

    return run


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10240, help="training images per timed pass (default 10240)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per variant; medians are reported")
    args = parser.parse_args(argv)

    net = build_network("lenet5", (20, 50, 500, 10))
    params = net.init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((args.images, 784), np.float32))
    y = jnp.asarray(rng.integers(0, 10, args.images), jnp.int32)
    difference = float(jnp.abs(net.full(params, x[:256]) - reference_forward(params, x[:256])).max())
    print(f"largest logit difference between the two forward passes: {difference:.2e}")

    seconds = {}
    for name, forward in (("patch convolution (jsplit)", net.full), ("lax.conv_general_dilated", reference_forward)):
        run = epoch_fn(forward)
        jax.block_until_ready(run(params, x, y))  # compile
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            jax.block_until_ready(run(params, x, y))
            times.append(time.perf_counter() - start)
        seconds[name] = statistics.median(times)
        print(f"{name:28s} {seconds[name]:7.2f} s per {args.images} images (median of {args.repeats})")
    patch, reference = seconds.values()
    print(f"speed-up of the patch convolution: {reference / patch:.1f}x")


if __name__ == "__main__":
    main()
