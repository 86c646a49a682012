"""Per-step energy of every candidate, the jitted argmin selector, and the policies.

At rate R a candidate needs ``bits_k / R`` seconds to send its payload. When
that fits in the transmission cap (the step duration), it costs
``E_k = c_k + P_tx * bits_k / R``. When it does not fit, the inference fails:
the device transmits for the whole cap, pays ``c_k + P_tx * cap`` and the
prediction counts as wrong. Selection prefers candidates that fit and, when none
does, takes the cheapest failure, so energies stay finite even at R = 0.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jsplit.config import POLICY_NAMES as POLICIES
from jsplit.profile import CandidateTable

ADAPTIVE_POLICIES = ("adaptive", "adaptive_uncompressed")


def sample_energy(energy_local_j, bits_sent, inv_rate, cap_s: float, tx_power_w: float):
    """Energy per inference and whether the payload fits in the cap.

    Args:
        energy_local_j: c_k [J], shape [K].
        bits_sent: payload bits, shape [K].
        inv_rate: 1 / R [s/bit], any shape [...]; ``inf`` for R = 0.
        cap_s: transmission time cap [s].
        tx_power_w: P_tx [W].

    Returns:
        (energy [..., K] in J, fits [..., K] bool). A candidate that sends
        nothing always fits and costs c_k.
    """
    bits = jnp.asarray(bits_sent, jnp.float32)
    tx_time = jnp.where(bits > 0, bits * inv_rate[..., None], 0.0)
    fits = tx_time <= cap_s
    energy = energy_local_j + tx_power_w * jnp.where(fits, tx_time, cap_s)
    return energy, fits


def select_argmin(energy, fits, allowed):
    """Index of the cheapest allowed candidate, preferring those that fit.

    Args:
        energy: [..., K] J. fits: [..., K] bool. allowed: [K] bool, at least one True.

    Returns:
        int32 [...]: argmin of energy over allowed candidates that fit; where
        none fits, argmin over all allowed candidates.
    """
    feasible = fits & allowed
    best_feasible = jnp.argmin(jnp.where(feasible, energy, jnp.inf), axis=-1)
    best_allowed = jnp.argmin(jnp.where(allowed, energy, jnp.inf), axis=-1)
    return jnp.where(feasible.any(axis=-1), best_feasible, best_allowed).astype(jnp.int32)


def budget_mask(table: CandidateTable, accuracy_margin_pp: float) -> np.ndarray:
    """Candidates whose test accuracy is within ``accuracy_margin_pp`` points of the uncompressed model's."""
    reference = reference_accuracy(table)
    return table.accuracy >= reference - accuracy_margin_pp / 100.0 - 1e-12


def reference_accuracy(table: CandidateTable) -> float:
    """Test accuracy of the uncompressed model (every uncompressed candidate computes the same function)."""
    return float(table.accuracy[table.uncompressed & (table.split == 0)][0])


def adaptive_masks(table: CandidateTable, budget: np.ndarray) -> dict[str, np.ndarray]:
    """Candidate sets of the per-step policies: the budget set and the uncompressed set."""
    return {"adaptive": budget, "adaptive_uncompressed": table.uncompressed.copy()}


def fixed_policy_candidates(table: CandidateTable, budget: np.ndarray, mean_energy_j: np.ndarray) -> dict[str, int]:
    """Candidate index of each fixed policy.

    Args:
        budget: [K] bool, candidates that meet the loss budget.
        mean_energy_j: [K] mean energy per inference of each candidate over the
            run's channel samples, failures included. ``static`` and
            ``static_uncompressed`` use it with hindsight.
    """
    last_split = int(table.split.max())

    def cheapest(mask: np.ndarray, cost: np.ndarray, policy: str) -> int:
        if not mask.any():
            raise ValueError(f"policy {policy} has no candidate: no candidate meets its conditions")
        return int(np.flatnonzero(mask)[np.argmin(cost[mask])])

    uncompressed = table.uncompressed
    return {
        "static": cheapest(budget, mean_energy_j, "static"),
        "static_uncompressed": cheapest(uncompressed, mean_energy_j, "static_uncompressed"),
        "full_offload": cheapest(uncompressed & (table.split == 0), mean_energy_j, "full_offload"),
        "full_local": cheapest(budget & (table.split == last_split), mean_energy_j, "full_local"),
        "full_local_uncompressed": cheapest(uncompressed & (table.split == last_split), mean_energy_j,
                                            "full_local_uncompressed"),
    }
