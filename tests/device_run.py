"""Run a small study and print its statistics as JSON; the device-count test runs it in a subprocess.

Usage: python tests/device_run.py CHUNK_SIZE
"""

import json
import sys
from pathlib import Path

import jax
import numpy as np
from omegaconf import OmegaConf

from jsplit.channel import noise_density_w_per_hz, simple_link, straight_pass_distances
from jsplit.pathloss import log_distance_db
from jsplit.compress import candidate_grid, magnitude_mask
from jsplit.model import build_network
from jsplit.montecarlo import simulate
from jsplit.profile import EnergyProfile, build_table
from jsplit.select import adaptive_masks, budget_mask

HOROWITZ_FILE = Path(__file__).resolve().parents[1] / "conf" / "energy" / "horowitz45nm.yaml"


def small_study(chunk_size: int) -> dict:
    net = build_network("lenet300100", (300, 100, 10))
    dense = net.init(jax.random.PRNGKey(0))
    models = [dense, jax.tree.map(lambda p, m: p * m, dense, magnitude_mask(dense, 0.9))]
    grid = candidate_grid([0.0, 0.9], 3, [32, 8])
    accuracy = 0.98 - 0.005 * grid.model_index
    profile = EnergyProfile.from_config(OmegaConf.load(HOROWITZ_FILE))
    table = build_table(net, models, grid, np.full(len(grid), 0.1), accuracy, profile, tx_power_w=0.2)

    distances = straight_pass_distances(80, 0.1, 10.0, 50.0) * 5.0
    gain = 10 ** (-np.asarray(log_distance_db(distances, 2.4e9, 3.0, 1.0), np.float64) / 10)
    link = simple_link(gain, 0.5, 1e5, 0.2, noise_density_w_per_hz(-174.0, 9.0), 0.1)
    masks = adaptive_masks(table, budget_mask(table, 1.0))
    stats, _ = simulate(table, link, np.stack([masks["adaptive"], masks["adaptive_uncompressed"]]), trajectories=48,
                        realizations=2, chunk_size=chunk_size, key=jax.random.PRNGKey(3), progress=False)
    return {"devices": stats.devices, "mean": stats.energy.mean.tolist(), "std": stats.energy.std.tolist(),
            "outage": stats.outage_share.tolist(), "splits": stats.split_count_per_step.sum(axis=1).tolist()}


if __name__ == "__main__":
    print(json.dumps(small_study(int(sys.argv[1]))))
