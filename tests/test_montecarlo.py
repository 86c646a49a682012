from pathlib import Path

import jax
import numpy as np
import pytest
from omegaconf import OmegaConf

from jsplit.channel import noise_density_w_per_hz, simple_link, straight_pass_distances
from jsplit.pathloss import log_distance_db
from jsplit.compress import candidate_grid, magnitude_mask
from jsplit.channel import rayleigh_gauss_markov
from jsplit.montecarlo import bytes_per_sample, chunk_trajectories, simulate
from jsplit.profile import EnergyProfile, build_table
from jsplit.select import adaptive_masks, budget_mask, fixed_policy_candidates

HOROWITZ_FILE = Path(__file__).resolve().parents[1] / "conf" / "energy" / "horowitz45nm.yaml"

STEPS = 60


@pytest.fixture(scope="module")
def table(lenet):
    dense = lenet.init(jax.random.PRNGKey(0))
    models = [dense] + [jax.tree.map(lambda p, m: p * m, dense, magnitude_mask(dense, s)) for s in (0.5, 0.9)]
    grid = candidate_grid([0.0, 0.5, 0.9], 3, [32, 8])
    accuracy = 0.98 - 0.004 * grid.model_index - 0.001 * (grid.activation_bits == 8)
    profile = EnergyProfile.from_config(OmegaConf.load(HOROWITZ_FILE))
    return build_table(lenet, models, grid, 0.1 + 0.01 * grid.model_index, accuracy, profile, tx_power_w=0.2)


def make_link(bandwidth_hz, scale=10.0):
    distances = straight_pass_distances(STEPS, 0.1, 10.0, 50.0) * scale
    gain = 10 ** (-np.asarray(log_distance_db(distances, 2.4e9, 3.0, 1.0), np.float64) / 10)
    return simple_link(gain, 0.3, bandwidth_hz, 0.2, noise_density_w_per_hz(-174.0, 9.0), 0.1)


def run(table, link, chunk_size, trajectories=40, **options):
    budget = budget_mask(table, 1.0)
    masks = adaptive_masks(table, budget)
    allowed = np.stack([masks["adaptive"], masks["adaptive_uncompressed"]])  # streams K and K + 1
    stats, _ = simulate(table, link, allowed, trajectories=trajectories, chunk_size=chunk_size,
                        key=jax.random.PRNGKey(7), progress=False, **options)
    return stats, budget


def test_results_independent_of_chunking(table):
    link = make_link(1e5)
    small, _ = run(table, link, chunk_size=7)
    whole, _ = run(table, link, chunk_size=40)

    np.testing.assert_allclose(small.energy.mean, whole.energy.mean, rtol=1e-5)
    np.testing.assert_allclose(small.energy.std, whole.energy.std, rtol=1e-4)
    np.testing.assert_allclose(small.ci95()[0], whole.ci95()[0], rtol=1e-4)
    np.testing.assert_array_equal(small.outage_share, whole.outage_share)
    np.testing.assert_array_equal(small.split_count_per_step, whole.split_count_per_step)
    assert small.samples == whole.samples == 40 * STEPS


@pytest.mark.parametrize("bandwidth", [1e5, 1e6, 1e7])
def test_adaptive_never_costs_more_than_fixed_policies(table, bandwidth):
    stats, budget = run(table, make_link(bandwidth), chunk_size=16)
    k = len(table)
    fixed = fixed_policy_candidates(table, budget, stats.energy.mean[:k])
    adaptive = stats.energy.mean[k]

    for name, candidate in fixed.items():
        assert adaptive <= stats.energy.mean[candidate] * (1 + 1e-6), name
    assert adaptive <= stats.energy.mean[k + 1] * (1 + 1e-6)
    assert stats.energy.mean[k + 1] <= stats.energy.mean[fixed["static_uncompressed"]] * (1 + 1e-6)


def test_adaptive_uncompressed_switches_split(table):
    # At 1 MHz and 50 m the uncompressed model's offload and local energies cross near 22 dB of SNR.
    stats, _ = run(table, make_link(1e6, scale=1.0), chunk_size=40)
    shares = stats.split_count_per_step[1].sum(axis=0) / stats.samples

    assert shares.sum() == pytest.approx(1.0)
    assert (shares > 0.01).sum() >= 2


def test_statistics_are_finite_with_outages(table):
    stats, _ = run(table, make_link(1e3), chunk_size=40)  # 1 kHz: the raw image rarely fits in a step

    assert np.isfinite(stats.energy.mean).all()
    assert np.isfinite(stats.energy.std).all()
    assert stats.outage_share.max() > 0


@pytest.mark.parametrize("bandwidth", [1e3, 1e6])
def test_breakpoints_and_argmin_agree(table, bandwidth):
    link = make_link(bandwidth, scale=3.0)
    fast, _ = run(table, link, chunk_size=20, method="breakpoints")
    reference, _ = run(table, link, chunk_size=20, method="argmin")

    np.testing.assert_allclose(fast.energy.mean, reference.energy.mean, rtol=1e-5)
    np.testing.assert_allclose(fast.energy_per_step.mean, reference.energy_per_step.mean, rtol=1e-5)
    np.testing.assert_allclose(fast.accuracy, reference.accuracy, rtol=1e-6)
    np.testing.assert_array_equal(fast.split_count_per_step, reference.split_count_per_step)


def test_fixed_stream_matches_direct_average(table):
    """A fixed candidate's mean equals the average of c_k + a_k min(1/R, t_k) over the same fading draws."""
    link = make_link(1e5)
    stats, _ = run(table, link, chunk_size=40)
    key = jax.random.PRNGKey(7)
    keys = [jax.random.fold_in(jax.random.fold_in(key, i), 0) for i in range(40)]
    fading = np.stack([np.asarray(rayleigh_gauss_markov(k, STEPS, link.rho)) for k in keys]).astype(np.float64)
    rate = link.bandwidth_hz * np.log2(1 + link.tx_power_w * link.path_gain * fading
                                       / (link.noise_density_w_per_hz * link.bandwidth_hz))
    threshold = 0.1 / table.bits_sent.astype(np.float64)

    for k in (0, 5, len(table) - 1):
        energy = table.energy_local_j[k] + table.tx_coeff[k] * np.minimum(1.0 / rate, threshold[k])
        assert stats.energy.mean[k] == pytest.approx(energy.mean(), rel=1e-4)
        assert stats.energy.std[k] == pytest.approx(energy.std(ddof=1), rel=1e-3)
        assert stats.outage_share[k] == pytest.approx((1.0 / rate > threshold[k]).mean(), abs=1e-9)


def test_realizations_split_variance(table):
    link = make_link(1e5)
    stats, _ = run(table, link, chunk_size=10, trajectories=30, realizations=4)
    parts = stats.variance_components()

    assert stats.samples == 30 * 4 * STEPS
    # All trajectories share one path, so trajectory means differ only through fading:
    # Var(trajectory mean) = Var(run mean) / R, and Var(run mean) is the within-trajectory part.
    ratio = parts["between_trajectories"] * 4 / parts["between_realizations"]
    finite = parts["between_realizations"] > 0
    assert np.median(ratio[finite]) == pytest.approx(1.0, abs=0.35)


def test_quantiles_bracket_the_mean(table):
    stats, _ = run(table, make_link(1e5), chunk_size=40)

    assert (np.diff(stats.quantiles, axis=0) >= 0).all()
    assert (stats.quantiles[0] <= stats.energy.mean * 1.05).all()
    assert (stats.quantiles[-1] >= stats.quantiles[1]).all()


def test_chunk_size_from_memory_budget():
    per_sample = bytes_per_sample(num_groups=8, num_policies=2, num_candidates=40, method="breakpoints")

    assert chunk_trajectories(512 * 2**20, 1, 1000, per_sample, devices=1, backend="gpu") == 512 * 2**20 // (
        1000 * per_sample)
    assert chunk_trajectories(512 * 2**20, 1, 1000, per_sample, devices=1, backend="cpu") == 2**18 // 1000
    assert chunk_trajectories(2**20, 1, 1000, per_sample, devices=1, backend="cpu") == 2**20 // (1000 * per_sample)
    assert chunk_trajectories(512 * 2**20, 1, 1000, per_sample, devices=4) % 4 == 0
    assert chunk_trajectories(1.0, 1, 1000, per_sample, devices=2) == 2


def test_four_devices_match_one_device():
    """The trajectory axis sharded over 4 host devices gives the one-device numbers."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from device_run import small_study

    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    completed = subprocess.run([sys.executable, str(Path(__file__).parent / "device_run.py"), "16"], env=env,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    sharded = json.loads(completed.stdout.strip().splitlines()[-1])
    single = small_study(48)

    assert sharded["devices"] == 4
    assert single["devices"] == 1
    np.testing.assert_allclose(sharded["mean"], single["mean"], rtol=1e-5)
    np.testing.assert_allclose(sharded["std"], single["std"], rtol=1e-4)
    assert sharded["outage"] == single["outage"]
    assert sharded["splits"] == single["splits"]
