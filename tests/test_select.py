import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jsplit.select import (
    Breakpoints, lower_envelope, sample_energy, select_argmin, select_breakpoints, transmit_thresholds,
)


def brute_force(energy, fits, allowed):
    """Reference selection, one sample at a time in plain Python."""
    feasible = [k for k in range(len(energy)) if allowed[k] and fits[k]]
    pool = feasible or [k for k in range(len(energy)) if allowed[k]]
    return min(pool, key=lambda k: energy[k])


def test_energy_is_local_plus_power_times_airtime():
    bits = np.asarray([1000, 6272])
    energy, fits = sample_energy(jnp.asarray([1e-6, 0.0]), jnp.asarray(0.2 * bits, jnp.float32),
                                 jnp.asarray(transmit_thresholds(bits, 0.1)), jnp.asarray([1e-6]))

    np.testing.assert_allclose(energy[0], [1e-6 + 0.2 * 1000 * 1e-6, 0.2 * 6272 * 1e-6], rtol=1e-6)
    assert bool(fits.all())


def test_payload_over_cap_fails_at_capped_cost():
    bits = np.asarray([1_000_000])
    energy, fits = sample_energy(jnp.asarray([2e-6]), jnp.asarray(0.2 * bits, jnp.float32),
                                 jnp.asarray(transmit_thresholds(bits, 0.1)), jnp.asarray([1e-6]))

    assert not bool(fits[0, 0])
    assert float(energy[0, 0]) == pytest.approx(2e-6 + 0.2 * 0.1)


def test_zero_rate_stays_finite():
    bits = np.asarray([100, 0])
    energy, fits = sample_energy(jnp.asarray([1e-6, 5e-6]), jnp.asarray(0.2 * bits, jnp.float32),
                                 jnp.asarray(transmit_thresholds(bits, 0.1)), jnp.asarray([jnp.inf]))

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


def random_table(data, k):
    """Candidate tables with ties, zero payloads and a shared cap, as the property tests draw them."""
    local = data.draw(st.lists(st.sampled_from([0.0, 1e-7, 5e-7, 1e-6, 3e-6, 1e-5]) | st.floats(0.0, 2.0**-13, width=32),
                               min_size=k, max_size=k))
    bits = data.draw(st.lists(st.sampled_from([0, 4, 800, 2400, 3200, 6272, 9600]), min_size=k, max_size=k))
    allowed = data.draw(st.lists(st.booleans(), min_size=k, max_size=k).filter(any))
    c = np.asarray(local, np.float32)
    a = (0.2 * np.asarray(bits, np.float64)).astype(np.float32)
    return c, a, transmit_thresholds(bits, 0.1), np.asarray(allowed)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_breakpoints_match_argmin(data):
    k = data.draw(st.integers(1, 10))
    c, a, t, allowed = random_table(data, k)
    inv_rate = np.asarray(data.draw(st.lists(
        st.floats(2.0**-30, 1.0, width=32) | st.sampled_from([float(v) for v in t if np.isfinite(v)] + [np.inf]),
        min_size=1, max_size=20)), np.float32)

    envelope = lower_envelope(c, a, t, allowed)
    by_breakpoints = np.asarray(select_breakpoints(jnp.asarray(inv_rate), jnp.asarray(envelope.inv_rate, jnp.float32),
                                                   jnp.asarray(envelope.candidate)))
    energy, fits = sample_energy(jnp.asarray(c), jnp.asarray(a), jnp.asarray(t), jnp.asarray(inv_rate))
    by_argmin = np.asarray(select_argmin(energy, fits, jnp.asarray(allowed)))
    energy, fits = np.asarray(energy), np.asarray(fits)

    rows = np.arange(len(inv_rate))
    assert allowed[by_breakpoints].all()
    np.testing.assert_array_equal(fits[rows, by_breakpoints], fits[rows, by_argmin])
    np.testing.assert_allclose(energy[rows, by_breakpoints], energy[rows, by_argmin], rtol=1e-5, atol=1e-12)


def test_envelope_of_two_lines():
    # Local: 10 uJ, nothing to send. Offload: 6272 bits. They cross at x = 1e-5 / (0.2 * 6272).
    c = np.asarray([1e-5, 0.0], np.float32)
    bits = np.asarray([0, 6272])
    a = (0.2 * bits).astype(np.float32)
    envelope = lower_envelope(c, a, transmit_thresholds(bits, 0.1), np.asarray([True, True]))

    assert envelope.candidate.tolist() == [1, 0]
    assert envelope.inv_rate[0] == pytest.approx(1e-5 / (0.2 * 6272), rel=1e-6)


def test_envelope_when_nothing_fits():
    bits = np.asarray([6272, 2400])
    c = np.asarray([0.0, 1e-6], np.float32)
    a = (0.2 * bits).astype(np.float32)
    t = transmit_thresholds(bits, 0.1)
    envelope = lower_envelope(c, a, t, np.asarray([True, True]))

    # Past both thresholds every choice fails; the cheapest failure is the one with less local energy.
    assert envelope.candidate[-1] == 0
    assert envelope.inv_rate[-1] == pytest.approx(float(t[1]))


def test_breakpoints_as_snr_thresholds():
    envelope = Breakpoints(inv_rate=np.asarray([1.0 / 1e6]), candidate=np.asarray([1, 0], np.int32))

    # R = 1 Mbit/s over 1 MHz needs log2(1 + snr) = 1, so snr = 1 (0 dB).
    assert envelope.snr_db(1e6)[0] == pytest.approx(0.0, abs=1e-9)
