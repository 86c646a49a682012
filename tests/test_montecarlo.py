import jax
import numpy as np
import pytest

from jsplit.channel import LinkModel, log_distance_path_loss_db, noise_density_w_per_hz, straight_pass_distances
from jsplit.compress import candidate_grid, magnitude_mask
from jsplit.montecarlo import simulate
from jsplit.profile import EnergyProfile, build_table
from jsplit.select import adaptive_masks, budget_mask, fixed_policy_candidates

STEPS = 60


@pytest.fixture(scope="module")
def table(lenet):
    dense = lenet.init(jax.random.PRNGKey(0))
    models = [dense] + [jax.tree.map(lambda p, m: p * m, dense, magnitude_mask(dense, s)) for s in (0.5, 0.9)]
    grid = candidate_grid([0.0, 0.5, 0.9], 3, [32, 8])
    accuracy = 0.98 - 0.004 * grid.model_index - 0.001 * (grid.activation_bits == 8)
    profile = EnergyProfile(4.6e-12, 0.9e-12, 5e-12, 640e-12, 262144, 1e9, "Horowitz 45 nm")
    return build_table(lenet, models, grid, 0.1 + 0.01 * grid.model_index, accuracy, profile, tx_power_w=0.2)


def make_link(bandwidth_hz, scale=10.0):
    distances = straight_pass_distances(STEPS, 0.1, 10.0, 50.0) * scale
    gain = 10 ** (-log_distance_path_loss_db(distances, 2.4e9, 3.0, 1.0) / 10)
    return LinkModel(gain, 0.3, bandwidth_hz, 0.2, noise_density_w_per_hz(-174.0, 9.0), 0.1)


def run(table, link, chunk_size, trajectories=40):
    budget = budget_mask(table, 1.0)
    masks = adaptive_masks(table, budget)
    allowed = np.stack([masks["adaptive"], masks["adaptive_uncompressed"]])
    return simulate(table, link, allowed, trajectories=trajectories, chunk_size=chunk_size,
                    key=jax.random.PRNGKey(7), progress=False), budget


def test_results_independent_of_chunking(table):
    link = make_link(1e5)
    small, _ = run(table, link, chunk_size=7)
    whole, _ = run(table, link, chunk_size=40)

    np.testing.assert_allclose(small.energy.mean, whole.energy.mean, rtol=1e-5)
    np.testing.assert_allclose(small.energy.std, whole.energy.std, rtol=1e-4)
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
    assert stats.outage_count.max() > 0
