"""Streaming moments: per-chunk mean and M2, merged across chunks in float64.

A chunk reduces its samples to (count, mean, M2 = sum of squared deviations)
in one pass on the accelerator; the host merges chunks with the pairwise
update of Chan, Golub and LeVeque, "Updating formulae and a pairwise algorithm
for computing sample variances", 1979:

    n = n_a + n_b,  d = mean_b - mean_a,
    mean = mean_a + d n_b / n,  M2 = M2_a + M2_b + d^2 n_a n_b / n

which avoids the cancellation of a running sum of squares.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

Z_95 = 1.959963984540054  # two-sided 95% quantile of the standard normal


@dataclasses.dataclass
class Moments:
    """Count, mean and M2 of a stream of samples, element-wise over any shape.

    Attributes:
        count: number of samples, float64 (scalar or broadcastable to mean).
        mean: float64 array.
        m2: sum of squared deviations from the mean, float64 array.
    """

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def from_chunk(cls, count, mean, m2) -> "Moments":
        return cls(np.asarray(count, np.float64), np.asarray(mean, np.float64), np.asarray(m2, np.float64))

    def merge(self, other: "Moments") -> "Moments":
        count = self.count + other.count
        safe = np.where(count > 0, count, 1.0)
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / safe
        m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / safe
        return Moments(count, mean, m2)

    @property
    def variance(self) -> np.ndarray:
        """Sample variance (n - 1 in the denominator); 0 for fewer than two samples."""
        return np.where(self.count > 1, self.m2 / np.maximum(self.count - 1, 1), 0.0)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.variance)

    def ci95(self) -> tuple[np.ndarray, np.ndarray]:
        """Normal-approximation 95% confidence interval of the mean."""
        half = Z_95 * self.std / np.sqrt(np.maximum(self.count, 1))
        return self.mean - half, self.mean + half


def chunk_moments(values, weights, axis):
    """(count, mean, M2) of ``values`` over ``axis``, counting samples with weight 1 and skipping weight 0.

    Args:
        values: float array. weights: 0/1 array broadcastable to ``values``
            (0 marks padding in the last chunk), or None when every sample counts.
        axis: int or tuple of axes to reduce.

    Returns:
        (count, mean, m2) as jax arrays with ``axis`` removed; count has the
        shape of the reduced weights (of ``values`` when weights is None).
    """
    if weights is None:
        axes = {a % values.ndim for a in ((axis,) if isinstance(axis, int) else axis)}
        kept_shape = tuple(size for a, size in enumerate(values.shape) if a not in axes)
        count = jnp.full(kept_shape, float(np.prod([values.shape[a] for a in axes])), values.dtype)
        mean = values.mean(axis=axis)
        deviation = values - jnp.expand_dims(mean, axis)
        return count, mean, (deviation * deviation).sum(axis=axis)
    weights = jnp.broadcast_to(weights, values.shape).astype(values.dtype)
    count = weights.sum(axis=axis)
    mean = (values * weights).sum(axis=axis) / jnp.maximum(count, 1.0)
    deviation = (values - jnp.expand_dims(mean, axis)) * weights
    return count, mean, (deviation * deviation).sum(axis=axis)
