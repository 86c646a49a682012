import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jsplit.select import sample_energy, select_argmin


def brute_force(energy, fits, allowed):
    """Reference selection, one sample at a time in plain Python."""
    feasible = [k for k in range(len(energy)) if allowed[k] and fits[k]]
    pool = feasible or [k for k in range(len(energy)) if allowed[k]]
    return min(pool, key=lambda k: energy[k])


def test_energy_is_local_plus_power_times_airtime():
    energy, fits = sample_energy(jnp.asarray([1e-6, 0.0]), jnp.asarray([1000.0, 6272.0]), jnp.asarray([1e-6]),
                                 cap_s=0.1, tx_power_w=0.2)

    np.testing.assert_allclose(energy[0], [1e-6 + 0.2 * 1000 * 1e-6, 0.2 * 6272 * 1e-6], rtol=1e-6)
    assert bool(fits.all())


def test_payload_over_cap_fails_at_capped_cost():
    energy, fits = sample_energy(jnp.asarray([2e-6]), jnp.asarray([1e6]), jnp.asarray([1e-6]), cap_s=0.1,
                                 tx_power_w=0.2)

    assert not bool(fits[0, 0])
    assert float(energy[0, 0]) == pytest.approx(2e-6 + 0.2 * 0.1)


def test_zero_rate_stays_finite():
    energy, fits = sample_energy(jnp.asarray([1e-6, 5e-6]), jnp.asarray([100.0, 0.0]), jnp.asarray([jnp.inf]),
                                 cap_s=0.1, tx_power_w=0.2)

    assert bool(jnp.isfinite(energy).all())
    assert fits.tolist() == [[False, True]]
    assert int(select_argmin(energy, fits, jnp.asarray([True, True]))[0]) == 1


def test_prefers_fitting_candidate_over_cheaper_failure():
    energy = jnp.asarray([[1.0, 5.0, 0.5]])
    fits = jnp.asarray([[False, True, False]])

    assert int(select_argmin(energy, fits, jnp.asarray([True, True, True]))[0]) == 1
    assert int(select_argmin(energy, fits, jnp.asarray([True, False, True]))[0]) == 2


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_argmin_matches_brute_force(data):
    k = data.draw(st.integers(1, 12))
    energy = data.draw(st.lists(st.floats(0.0, 0.5, allow_nan=False, allow_subnormal=False, width=32), min_size=k, max_size=k))
    fits = data.draw(st.lists(st.booleans(), min_size=k, max_size=k))
    allowed = data.draw(st.lists(st.booleans(), min_size=k, max_size=k).filter(any))

    chosen = int(select_argmin(jnp.asarray([energy], jnp.float32), jnp.asarray([fits]), jnp.asarray(allowed))[0])
    expected = brute_force(np.float32(energy), fits, allowed)

    assert allowed[chosen]
    assert np.float32(energy[chosen]) == np.float32(energy[expected])
    assert fits[chosen] == fits[expected]
