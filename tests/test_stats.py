import jax.numpy as jnp
import numpy as np
import pytest

from jsplit.stats import Moments, chunk_moments


def test_chan_merge_equals_whole_sample():
    rng = np.random.default_rng(0)
    values = rng.lognormal(-8.0, 2.0, size=10_007)
    merged = None
    for chunk in np.array_split(values, [3, 1000, 1001, 7000]):
        part = Moments.from_chunk(*chunk_moments(jnp.asarray(chunk, jnp.float32), 1.0, axis=0))
        merged = part if merged is None else merged.merge(part)

    assert merged.count == len(values)
    assert merged.mean == pytest.approx(values.mean(), rel=1e-5)
    assert merged.variance == pytest.approx(values.var(ddof=1), rel=1e-4)


def test_padding_weight_excludes_samples():
    values = jnp.asarray([[1.0, 2.0], [3.0, 4.0], [1e9, 1e9]])
    weights = jnp.asarray([1.0, 1.0, 0.0])[:, None]

    count, mean, m2 = chunk_moments(values, weights, axis=0)

    np.testing.assert_allclose(count, [2.0, 2.0])
    np.testing.assert_allclose(mean, [2.0, 3.0])
    np.testing.assert_allclose(m2, [2.0, 2.0])


def test_ci95_of_known_sample():
    moments = Moments(np.float64(100.0), np.float64(5.0), np.float64(99.0))  # sample variance 1
    low, high = moments.ci95()

    assert high - 5.0 == pytest.approx(1.959964 / 10.0, rel=1e-6)
    assert 5.0 - low == pytest.approx(high - 5.0)
