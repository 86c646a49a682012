"""Per-step energy of every candidate, the jitted argmin selector, and the policies.

At rate R a candidate needs ``bits_k / R`` seconds to send its payload. When
that fits in the transmission cap (the step duration), it costs
``E_k = c_k + P_tx * bits_k / R``. When it does not fit, the inference fails:
the device transmits for the whole cap, pays ``c_k + P_tx * cap`` and the
prediction counts as wrong. Selection prefers candidates that fit and, when none
does, takes the cheapest failure, so energies stay finite even at R = 0.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from jsplit.config import POLICY_NAMES as POLICIES
from jsplit.profile import CandidateTable

ADAPTIVE_POLICIES = ("adaptive", "adaptive_uncompressed", "adaptive_outdated_csi")
# Policies that decide on the observed (delayed or noisy) channel instead of the true one.
STALE_CSI_POLICIES = ("adaptive_outdated_csi",)


def transmit_thresholds(bits_sent, cap_s) -> np.ndarray:
    """Largest inverse rate at which each payload fits in its cap: ``t_k = cap_k / bits_k`` [s/bit].

    Args:
        bits_sent: payload bits, [K].
        cap_s: transmission time cap [s], a scalar or [K]. A negative cap (the
            local computation alone misses the deadline) never fits.

    Returns float32 [K]: ``inf`` for candidates that send nothing within their
    cap, 0 for those that never fit. Both selectors compare ``1/R <= t_k``
    against these same float32 values, so they agree on feasibility exactly.
    """
    bits = np.asarray(bits_sent, np.float64)
    cap = np.broadcast_to(np.asarray(cap_s, np.float64), bits.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        sending = np.maximum(cap, 0.0) / bits
    silent = np.where(cap >= 0, np.inf, 0.0)
    return np.where(bits > 0, sending, silent).astype(np.float32)


def transmit_caps(table: CandidateTable, step_s: float, deadline_s: float | None) -> np.ndarray:
    """Transmission time cap of each candidate [s], float64 [K].

    Without a deadline the cap is the step duration. With one, the payload
    must arrive by the deadline after the local computation:
    ``cap_k = deadline - local_latency_k``.
    """
    if deadline_s is None:
        return np.full(len(table), float(step_s))
    return float(deadline_s) - table.local_latency_s


def sample_energy(energy_local_j, tx_coeff, thresholds, inv_rate):
    """Energy per inference and whether the payload fits in the cap.

    ``E_k = c_k + a_k * min(1/R, t_k)``: below the threshold this is
    ``c_k + P_tx bits_k / R``, above it the capped cost ``c_k + P_tx * cap``.

    Args:
        energy_local_j: c_k [J], shape [K].
        tx_coeff: a_k = P_tx * bits_k [J bit/s], shape [K].
        thresholds: t_k from ``transmit_thresholds`` [s/bit], shape [K].
        inv_rate: 1 / R [s/bit], any shape [...]; ``inf`` for R = 0.

    Returns:
        (energy [..., K] in J, fits [..., K] bool). A candidate that sends
        nothing always fits and costs c_k.
    """
    x = inv_rate[..., None]
    fits = x <= thresholds
    energy = energy_local_j + jnp.where(tx_coeff > 0, tx_coeff * jnp.minimum(x, thresholds), 0.0)
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
    """Candidate sets of the per-step policies: the budget set, the uncompressed set, the budget set again."""
    return {"adaptive": budget, "adaptive_uncompressed": table.uncompressed.copy(), "adaptive_outdated_csi": budget}


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


@dataclasses.dataclass(frozen=True)
class Breakpoints:
    """The optimal candidate as a piecewise-constant function of the inverse rate x = 1/R.

    Segment i covers ``(inv_rate[i-1], inv_rate[i]]`` (the first starts at 0,
    the last ends at infinity) and selects ``candidate[i]``.

    Attributes:
        inv_rate: float64 [B], increasing segment ends [s/bit].
        candidate: int32 [B + 1], candidate index per segment.
    """

    inv_rate: np.ndarray
    candidate: np.ndarray

    def snr_db(self, bandwidth_hz: float) -> np.ndarray:
        """Convert the breakpoints to SNR thresholds [dB], ``snr = 2^(1 / (B x)) - 1``, in decreasing order."""
        with np.errstate(over="ignore", divide="ignore"):
            snr = np.expm1(np.log(2.0) / (bandwidth_hz * self.inv_rate))
            return 10.0 * np.log10(snr)


def lower_envelope(energy_local_j, tx_coeff, thresholds, allowed) -> Breakpoints:
    """Compute the exact breakpoints of the selection rule of ``select_argmin`` over the allowed candidates.

    Between consecutive feasibility thresholds the set of fitting candidates is
    fixed, and the cheapest of the lines ``c_k + a_k x`` changes only where the
    lower envelope of those lines has a corner. Past the last finite threshold
    of a sending candidate, only candidates that send nothing fit. Where none
    fits, the choice is the cheapest failure ``c_k + P_tx * cap``, which does
    not depend on x. Ties go to the smaller slope, then to the lower index.

    Args:
        energy_local_j, tx_coeff: c_k and a_k, shape [K].
        thresholds: float32 [K] from ``transmit_thresholds``.
        allowed: bool [K], at least one True.

    Returns:
        Breakpoints whose lookup gives, at every x, a candidate of the same
        energy as ``select_argmin`` (up to float32 rounding at the corners).
    """
    c = np.asarray(energy_local_j, np.float64)
    a = np.asarray(tx_coeff, np.float64)
    t = np.asarray(thresholds, np.float32).astype(np.float64)
    pool = np.flatnonzero(np.asarray(allowed, bool))
    if pool.size == 0:
        raise ValueError("lower_envelope needs at least one allowed candidate")

    failure_cost = c + np.where(a > 0, a * np.where(np.isfinite(t), t, 0.0), 0.0)
    finite = t[pool][np.isfinite(t[pool]) & (t[pool] > 0)]
    edges = np.concatenate([[0.0], np.unique(finite), [np.inf]])
    ends, chosen = [], []

    for low, high in zip(edges[:-1], edges[1:]):
        feasible = pool[t[pool] >= high]
        if feasible.size == 0:
            ends.append(high)
            chosen.append(int(pool[_first_min(failure_cost[pool])]))
            continue

        x = low
        current = int(feasible[_first_min_lexsort(c[feasible] + a[feasible] * x, a[feasible])])
        while True:
            flatter = feasible[a[feasible] < a[current]]
            crossing = (c[flatter] - c[current]) / (a[current] - a[flatter])
            ahead = crossing > x
            if not ahead.any() or crossing[ahead].min() >= high:
                break
            x = float(crossing[ahead].min())
            at_corner = flatter[ahead][crossing[ahead] == x]
            ends.append(x)
            chosen.append(current)
            current = int(at_corner[_first_min_lexsort(a[at_corner], at_corner)])
        ends.append(high)
        chosen.append(current)

    return _merge_segments(np.asarray(ends), np.asarray(chosen, np.int32))


def _first_min(values: np.ndarray) -> int:
    return int(np.argmin(values))


def _first_min_lexsort(primary: np.ndarray, secondary: np.ndarray) -> int:
    """Index of the smallest ``primary``, ties broken by the smallest ``secondary``, then position."""
    return int(np.lexsort((np.arange(len(primary)), secondary, primary))[0])


def _merge_segments(ends: np.ndarray, chosen: np.ndarray) -> Breakpoints:
    keep = np.ones(len(chosen), bool)
    keep[:-1] = chosen[:-1] != chosen[1:]
    ends, chosen = ends[keep], chosen[keep]
    return Breakpoints(inv_rate=ends[:-1].astype(np.float64), candidate=chosen)


def select_breakpoints(inv_rate, breakpoint_inv_rate, candidate):
    """Look up the optimal candidate per sample: int32 [...] from 1/R [...] with ``searchsorted``."""
    segment = jnp.searchsorted(breakpoint_inv_rate, inv_rate, side="left", method="scan_unrolled")
    return candidate[segment]
