"""Channel, mobility and decision models against their closed forms."""

import math

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from jsplit.channel import (
    ChannelSpec, bessel_j0, block_fading, build_link, correlated_normal, gauss_markov, rician, sum_of_sinusoids,
)
from jsplit.compress import candidate_grid, magnitude_mask
from jsplit.montecarlo import simulate
from jsplit.profile import EnergyProfile, build_table
from jsplit.select import adaptive_masks, budget_mask, transmit_thresholds
from tests.test_config import CONF_DIR

HOROWITZ_FILE = Path(__file__).resolve().parents[1] / "conf" / "energy" / "horowitz45nm.yaml"


def keys(count, seed=0):
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.PRNGKey(seed), jnp.arange(count))


def config(*overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_bessel_j0_matches_scipy():
    x = np.linspace(0.0, 200.0, 200_001)

    assert np.abs(np.asarray(bessel_j0(x)) - scipy.special.j0(x)).max() < 2e-6


@pytest.mark.parametrize("mean_snr", [0.5, 10.0, 1000.0])
def test_rayleigh_ergodic_capacity(mean_snr):
    h = jax.vmap(gauss_markov, in_axes=(0, None, None))(keys(400), 500, 0.2)
    gain = np.abs(np.asarray(h, np.complex128)) ** 2
    # E[log2(1 + rho g)] for g ~ Exp(1) is log2(e) exp(1/rho) E1(1/rho).
    expected = math.log2(math.e) * math.exp(1 / mean_snr) * scipy.special.exp1(1 / mean_snr)

    assert np.log2(1 + mean_snr * gain).mean() == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("k_db", [0.0, 6.0, 12.0])
def test_rician_power_moments(k_db):
    diffuse = jax.vmap(gauss_markov, in_axes=(0, None, None))(keys(200, 1), 1000, 0.0)
    phase = jax.random.uniform(jax.random.PRNGKey(5), (200, 1000), maxval=2 * math.pi)
    gain = np.abs(np.asarray(rician(diffuse, k_db, phase), np.complex128)) ** 2
    k = 10 ** (k_db / 10)

    assert gain.mean() == pytest.approx(1.0, abs=0.01)
    # E[g^2] = (K^2 + 4K + 2) / (K + 1)^2 for unit-mean Rician power.
    assert (gain**2).mean() == pytest.approx((k * k + 4 * k + 2) / (k + 1) ** 2, rel=0.03)


def test_sum_of_sinusoids_autocorrelation_is_j0():
    doppler, step_s = 50.0, 0.001
    h = jax.vmap(sum_of_sinusoids, in_axes=(0, None, None, None))(keys(3000, 2), jnp.full(200, doppler), step_s, 16)
    h = np.asarray(h, np.complex128)

    assert (np.abs(h) ** 2).mean() == pytest.approx(1.0, abs=0.02)
    for lag in (1, 3, 5, 10, 20):
        measured = np.real(h[:, :-lag] * np.conj(h[:, lag:])).mean()
        assert measured == pytest.approx(scipy.special.j0(2 * math.pi * doppler * lag * step_s), abs=0.03), lag


def test_gauss_markov_follows_per_step_correlation():
    rho = jnp.concatenate([jnp.zeros(1), jnp.full(499, 0.9)])
    h = np.asarray(jax.vmap(gauss_markov, in_axes=(0, None, None))(keys(2000, 3), 500, rho), np.complex128)

    # 10^6 products whose neighbours are correlated (by about rho^2): the standard error is near 0.004.
    assert np.real(h[:, :-1] * np.conj(h[:, 1:])).mean() == pytest.approx(0.9, abs=0.015)


def test_block_fading_holds_then_changes():
    h = np.asarray(jax.vmap(block_fading, in_axes=(0, None, None))(keys(2000, 4), 30, 10))

    assert np.all(h[:, 0:10] == h[:, :1])
    assert np.all(h[:, 10:20] == h[:, 10:11])
    assert abs(np.real(h[:, 0] * np.conj(h[:, 10])).mean()) < 0.05
    assert (np.abs(h) ** 2).mean() == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("lag_m", [2.0, 10.0, 30.0])
def test_shadowing_correlation_decays_exponentially(lag_m):
    step_m, decorrelation_m = 1.0, 10.0
    z = np.asarray(jax.vmap(correlated_normal, in_axes=(0, None, None))(keys(1000, 5), jnp.full(300, step_m),
                                                                         decorrelation_m))
    lag = int(lag_m / step_m)

    assert z.std() == pytest.approx(1.0, abs=0.02)
    assert np.corrcoef(z[:, :-lag].ravel(), z[:, lag:].ravel())[0, 1] == pytest.approx(
        math.exp(-lag_m / decorrelation_m), abs=0.02)


def small_table(lenet):
    dense = lenet.init(jax.random.PRNGKey(0))
    models = [dense, jax.tree.map(lambda p, m: p * m, dense, magnitude_mask(dense, 0.9))]
    grid = candidate_grid([0.0, 0.9], 3, [32, 8])
    profile = EnergyProfile.from_config(OmegaConf.load(HOROWITZ_FILE))
    return build_table(lenet, models, grid, np.full(len(grid), 0.1), 0.98 - 0.005 * grid.model_index, profile, 0.2)


def test_split_share_on_fixed_distance_rayleigh_link(lenet):
    """On a circle around the base station the mean SNR is constant and g ~ Exp(1), so each
    segment of the optimal choice wins with probability exp(-g_low) - exp(-g_high)."""
    table = small_table(lenet)
    cfg = config("trajectory=circle", "trajectory.radius_m=150", "mc.steps=200", "bandwidth=1e6",
                 "trajectory.speed_mps=30")
    link = build_link(cfg)
    masks = adaptive_masks(table, budget_mask(table, 1.0))
    allowed = np.stack([masks["adaptive_uncompressed"]])
    stats, envelopes = simulate(table, link, allowed, trajectories=400, key=jax.random.PRNGKey(9), progress=False)

    mean_snr = link.tx_power_w * float(link.path_gain.mean()) / (link.noise_density_w_per_hz * link.bandwidth_hz)
    envelope = envelopes[0]
    with np.errstate(divide="ignore"):
        gain_edges = np.expm1(np.log(2) / (link.bandwidth_hz * envelope.inv_rate)) / mean_snr  # decreasing
    upper = np.concatenate([[np.inf], gain_edges])
    lower = np.concatenate([gain_edges, [0.0]])
    expected = np.zeros(int(table.split.max()) + 1)
    for segment, candidate in enumerate(envelope.candidate):
        expected[table.split[candidate]] += math.exp(-lower[segment]) - math.exp(-upper[segment])
    measured = stats.split_count_per_step[0].sum(axis=0) / stats.samples

    assert np.ptp(link.path_gain) / link.path_gain.mean() < 1e-5
    assert (expected > 0.05).sum() >= 2
    np.testing.assert_allclose(measured, expected, atol=0.01)


def test_deadline_makes_slow_candidates_infeasible(lenet):
    table = small_table(lenet)
    deadline = 1e-4  # 100 us: the dense first layer alone takes 235 us at 1 GMAC/s
    caps = deadline - table.local_latency_s
    thresholds = transmit_thresholds(table.bits_sent, caps)

    slow = table.local_latency_s > deadline
    assert slow.any()
    assert np.all(thresholds[slow] == 0.0)
    assert np.all(thresholds[~slow & (table.bits_sent > 0)] > 0.0)


def test_deadline_reported_as_misses(lenet):
    table = small_table(lenet)
    cfg = config("mc.steps=100", "bandwidth=1e5")
    link = build_link(cfg)
    masks = adaptive_masks(table, budget_mask(table, 1.0))
    stats, _ = simulate(table, link, np.stack([masks["adaptive"]]), trajectories=50, deadline_s=2e-3,
                        key=jax.random.PRNGKey(1), progress=False)
    offload = int(np.flatnonzero((table.split == 0) & table.uncompressed)[0])

    # The raw image (6,272 bits) needs 3.1 Mbit/s to arrive within 2 ms. At 100 kHz that takes an SNR of
    # 2^31 - 1, so it always misses.
    assert stats.outage_share[offload] == 1.0
    assert stats.outage_share[len(table)] < 0.01


def test_outdated_csi_costs_more_than_adaptive(lenet):
    table = small_table(lenet)
    cfg = config("mc.steps=200", "bandwidth=1e6", "csi.delay_steps=3", "csi.error_db=3")
    link = build_link(cfg)
    masks = adaptive_masks(table, budget_mask(table, 1.0))
    allowed = np.stack([masks["adaptive_uncompressed"], masks["adaptive_uncompressed"]])
    stats, _ = simulate(table, link, allowed, stale=[False, True], trajectories=100, key=jax.random.PRNGKey(2),
                        progress=False)
    k = len(table)

    assert stats.energy.mean[k + 1] > stats.energy.mean[k] * 1.001
    assert (stats.split_count_per_step[0] != stats.split_count_per_step[1]).any()


def test_path_outside_3gpp_range_rejected():
    cfg = config("channel=umi_los", "trajectory.closest_m=5", "mc.steps=3")

    with pytest.raises(ValueError, match="umi_los path loss is valid for 2D distances of 10 to 5000 m"):
        build_link(cfg)


@pytest.mark.parametrize("preset", ["umi_los", "umi_nlos", "umi_mixed", "uma_los", "uma_nlos", "uma_mixed",
                                    "rician_logdistance", "free_space"])
def test_channel_presets_build(preset):
    link = build_link(config(f"channel={preset}", "mc.steps=50"))

    assert np.isfinite(link.mean_snr_db()).all()
    assert link.spec.path_loss.split("_")[0] in preset or preset.startswith(link.spec.path_loss.split("_")[0])


def test_random_waypoint_link_varies_per_trajectory():
    spec_cfg = config("trajectory=random_waypoint", "channel=umi_nlos", "mc.steps=100")
    link = build_link(spec_cfg)

    assert isinstance(link.spec, ChannelSpec)
    assert link.spec.random_environment
    assert np.isfinite(link.path_gain).all()


def test_association_serves_from_least_loss_station():
    from jsplit.channel import large_scale_loss_db, path_loss_db

    spec = ChannelSpec(steps=5, step_s=1.0, bandwidth_hz=1e6, tx_power_w=0.2, noise_density_w_per_hz=1e-20,
                       carrier_hz=2.4e9)
    positions = jnp.asarray([[-400.0, 0.0], [-100.0, 0.0], [0.0, 0.0], [100.0, 0.0], [400.0, 0.0]])
    stations = jnp.asarray([[-300.0, 50.0], [300.0, 50.0]])
    loss, distance = large_scale_loss_db(spec, positions, stations, jax.random.PRNGKey(0))
    d2d = np.hypot(np.asarray(positions)[:, None, 0] - np.asarray(stations)[None, :, 0], 50.0)
    per_station = np.asarray(path_loss_db(spec, jnp.asarray(d2d)))

    np.testing.assert_allclose(np.asarray(loss), per_station.min(axis=1), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(distance), np.hypot(d2d.min(axis=1), 8.5), rtol=1e-5)
    assert per_station[0].argmin() == 0
    assert per_station[-1].argmin() == 1
