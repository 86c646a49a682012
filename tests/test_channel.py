import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

from jsplit.channel import (
    ChannelSpec, doppler_hz, motion, noise_density_w_per_hz, rayleigh_gauss_markov, shannon_rate,
    straight_pass_distances,
)
from jsplit.pathloss import free_space_db, log_distance_db


def draw_fading(trajectories, steps, rho, seed=0):
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.PRNGKey(seed), jnp.arange(trajectories))
    return np.asarray(jax.vmap(rayleigh_gauss_markov, in_axes=(0, None, None))(keys, steps, rho), np.float64)


def test_rayleigh_mean_power_gain_is_one():
    gains = draw_fading(400, 500, 0.3)
    # Exponential(1) has standard deviation 1; 200,000 weakly correlated draws give a standard error near 0.0025.
    assert gains.mean() == pytest.approx(1.0, abs=0.01)
    assert gains.var() == pytest.approx(1.0, abs=0.05)


def test_rayleigh_power_gain_is_exponential():
    gains = draw_fading(200, 500, 0.0).ravel()

    for threshold in (0.1, 1.0, 3.0):
        assert (gains > threshold).mean() == pytest.approx(math.exp(-threshold), abs=0.006)


@pytest.mark.parametrize("rho", [0.9, 0.5, -0.2])
def test_fading_lag_one_correlation(rho):
    gains = draw_fading(200, 1000, rho)
    g0, g1 = gains[:, :-1].ravel(), gains[:, 1:].ravel()
    # For complex Gaussian h, corr(|h_t|^2, |h_t+1|^2) = |corr(h_t, h_t+1)|^2 = rho^2.
    assert np.corrcoef(g0, g1)[0, 1] == pytest.approx(rho**2, abs=0.01)


def test_fading_correlation_is_jakes():
    speed, carrier, dt = 10.0, 2.4e9, 0.001
    f_d = doppler_hz(speed, carrier)

    assert f_d == pytest.approx(10.0 * 2.4e9 / 299_792_458.0)
    spec = ChannelSpec(steps=3, step_s=dt, bandwidth_hz=1e6, tx_power_w=0.2, noise_density_w_per_hz=1e-20,
                       carrier_hz=carrier)
    moving = np.asarray(motion(spec, jnp.asarray([[0.0, 0.0], [speed * dt, 0.0], [2 * speed * dt, 0.0]]))[1])
    still = np.asarray(motion(spec, jnp.zeros((3, 2)))[1])
    assert moving == pytest.approx(scipy.special.j0(2 * math.pi * f_d * dt), abs=2e-6)
    assert still == pytest.approx(1.0, abs=1e-6)


def test_shannon_rate_at_known_snr():
    bandwidth, n0 = 1e6, 1e-20
    gain_for_snr_one = n0 * bandwidth / 0.2
    gain_for_snr_1023 = 1023 * gain_for_snr_one

    assert float(shannon_rate(bandwidth, 0.2, gain_for_snr_one, n0)) == pytest.approx(1e6, rel=1e-5)
    assert float(shannon_rate(bandwidth, 0.2, gain_for_snr_1023, n0)) == pytest.approx(10e6, rel=1e-5)
    assert float(shannon_rate(bandwidth, 0.2, 0.0, n0)) == 0.0


def test_free_space_loss_at_one_metre():
    # 20 log10(4 pi f / c) at 2.4 GHz.
    assert free_space_db(1.0, 2.4e9) == pytest.approx(40.05, abs=0.01)


def test_log_distance_adds_ten_n_per_decade():
    at_10 = log_distance_db(10.0, 2.4e9, 3.0, 1.0)
    at_100 = log_distance_db(100.0, 2.4e9, 3.0, 1.0)

    assert at_100 - at_10 == pytest.approx(30.0)
    assert log_distance_db(0.2, 2.4e9, 3.0, 1.0) == pytest.approx(free_space_db(1.0, 2.4e9))


def test_noise_density_with_figure():
    # -174 dBm/Hz + 9 dB = -165 dBm/Hz = 10^(-19.5) W/Hz.
    assert noise_density_w_per_hz(-174.0, 9.0) == pytest.approx(10 ** -19.5, rel=1e-9)


def test_straight_pass_geometry():
    distances = straight_pass_distances(1000, 0.1, 10.0, 50.0)

    assert distances.min() == pytest.approx(math.hypot(0.5, 50.0))
    assert distances[0] == pytest.approx(math.hypot(499.5, 50.0))
    assert distances[0] == pytest.approx(distances[-1])
