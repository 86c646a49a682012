"""The streaming Monte-Carlo engine: draw the channel, select per policy, reduce.

A study is N trajectories x R fading realizations x T steps. Trajectories are
processed in chunks. Each chunk is one jitted call that draws the fading, runs
the per-step policies and reduces everything to moments. The host merges the
chunks in float64 (``jsplit.stats``), so memory is bounded by the chunk.

Every policy's energy is a function of the inverse rate x = 1/R alone:

* a fixed candidate costs ``c_k + a_k min(x, t_k)``, affine in
  ``y_j = min(x, t_j)`` for its threshold ``t_j = cap / bits``. The engine
  reduces ``y_j`` once per distinct threshold (J of them, one per distinct
  payload size) and derives the statistics of all K candidates from those, so
  the per-sample work does not grow with the number of compression levels;
* an adaptive policy looks its candidate up with ``searchsorted`` on the
  breakpoints of ``select.lower_envelope`` (O(log B) per sample), or, with
  ``method="argmin"``, evaluates every candidate (O(K), the reference).

Trajectory i, realization r draws its fading from
``fold_in(fold_in(key, i), r)``, so the draws do not depend on the chunk size
or the number of devices.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from jsplit.config import SELECTION_METHODS
from jsplit.channel import LinkModel, trajectory_inverse_rates
from jsplit.profile import CandidateTable
from jsplit.select import lower_envelope, sample_energy, select_argmin, transmit_caps, transmit_thresholds
from jsplit.stats import Moments, chunk_moments

log = logging.getLogger(__name__)

# Fixed log10 bins of the inverse rate [s/bit], for quantiles: 0.01 decade from 1e-12 to 1e2.
HISTOGRAM_LOG10_RANGE = (-12.0, 2.0)
HISTOGRAM_BINS = 1400
# Fixed log10 bins of the adaptive policies' energy [J]: 0.01 decade from 1e-15 to 1.
ENERGY_LOG10_RANGE = (-15.0, 0.0)
ENERGY_BINS = 1500
QUANTILES = (0.05, 0.5, 0.95, 0.99)


@dataclasses.dataclass(frozen=True)
class SelectionTables:
    """Everything the jitted chunk needs to know about candidates and policies.

    Attributes:
        threshold: float32 [K] t_k [s/bit]; group_threshold: float32 [J] the distinct values.
        group: int32 [K], index of each candidate's threshold in group_threshold.
        allowed: bool [P, K], candidate set of each adaptive policy.
        breakpoint_inv_rate: float32 [U], the union of all adaptive policies' breakpoints.
        breakpoint_candidate: int32 [P, U + 1], each policy's candidate per union segment.
    """

    threshold: np.ndarray
    group_threshold: np.ndarray
    group: np.ndarray
    allowed: np.ndarray
    breakpoint_inv_rate: np.ndarray
    breakpoint_candidate: np.ndarray
    envelopes: tuple


def build_selection_tables(table: CandidateTable, allowed: np.ndarray, cap_s) -> SelectionTables:
    """Precompute thresholds, their groups and the breakpoints of each adaptive policy; ``cap_s`` is scalar or [K]."""
    threshold = transmit_thresholds(table.bits_sent, cap_s)
    group_threshold, group = np.unique(threshold, return_inverse=True)
    envelopes = tuple(lower_envelope(table.energy_local_j, table.tx_coeff, threshold, mask) for mask in allowed)

    union = np.unique(np.concatenate([envelope.inv_rate for envelope in envelopes]).astype(np.float32))
    candidate = np.stack([
        envelope.candidate[np.searchsorted(envelope.inv_rate.astype(np.float32), union, side="left")]
        for envelope in envelopes])
    # The segment past the last union breakpoint; the lookup above only covers the union points themselves.
    candidate = np.concatenate([candidate, np.stack([[e.candidate[-1]] for e in envelopes])], axis=1)
    return SelectionTables(threshold=threshold, group_threshold=group_threshold.astype(np.float32),
                           group=group.astype(np.int32), allowed=np.asarray(allowed, bool),
                           breakpoint_inv_rate=union, breakpoint_candidate=candidate.astype(np.int32),
                           envelopes=envelopes)


def bytes_per_sample(num_groups: int, num_policies: int, num_candidates: int, method: str) -> int:
    """Estimate of the device memory one (trajectory, realization, step) sample needs in a chunk."""
    floats = 16 + 2 * num_groups + 6 * num_policies
    if method == "argmin":
        floats += 3 * num_candidates
    return 4 * floats


# On a CPU, chunks of about 2^18 samples keep the working arrays (1 MiB each) in the caches. Chunks of 10^6
# samples ran at about half the speed on a 2-core x86 machine. Accelerators take chunks as large as the budget
# allows.
CPU_CHUNK_SAMPLES = 2**18


def chunk_trajectories(memory_budget_bytes: float, realizations: int, steps: int, per_sample: int,
                       devices: int, backend: str = "cpu") -> int:
    """Trajectories per chunk: within the memory budget (and cache-sized on a CPU), a multiple of the device count."""
    per_trajectory = realizations * steps * per_sample
    trajectories = max(1, int(memory_budget_bytes // per_trajectory))
    if backend == "cpu":
        trajectories = min(trajectories, max(1, CPU_CHUNK_SAMPLES // (realizations * steps)) * devices)
    return max(devices, trajectories // devices * devices)


def _weigh(values, weight):
    """``values * weight``, or ``values`` itself in a chunk without padding (weight None)."""
    return values if weight is None else values * weight


def _expand(weight, axes: int):
    return None if weight is None else weight.reshape(weight.shape + (1,) * axes)


@functools.partial(jax.jit, static_argnames=("spec", "realizations", "method", "num_splits", "padded", "stale"))
def _run_chunk(key, trajectory_index, valid, channel_arrays, energy_local, tx_coeff, threshold, group_threshold, group,
               accuracy, loss, split, allowed, breakpoint_inv_rate, breakpoint_candidate, *, spec, realizations,
               method, num_splits, padded, stale):
    """Simulate one chunk of trajectories and reduce it to moments; see ``simulate`` for the shapes.

    ``stale`` flags, per adaptive policy, whether it decides on the observed
    (delayed or noisy) channel instead of the true one.
    """
    steps = spec.steps

    def one_trajectory(index):
        base = jax.random.fold_in(key, index)
        realization_keys = jax.vmap(lambda r: jax.random.fold_in(base, r))(jnp.arange(realizations, dtype=jnp.uint32))
        return trajectory_inverse_rates(spec, channel_arrays, base, realization_keys)

    inv_rate, observed_inv_rate = jax.vmap(one_trajectory)(trajectory_index)  # [n, R, T] each, inf where R = 0
    # Padding trajectories of the last chunk get weight 0; full chunks skip the weighting entirely.
    weight = valid.astype(jnp.float32)[:, None] if padded else None  # [n, 1]

    # Fixed candidates: moments of y_j = min(x, t_j) per distinct threshold, one threshold at a time
    # (separate loops fuse better on the CPU than one [n, R, T, J] array).
    weight3 = _expand(weight, 1)
    per_step, run_means, over_threshold = [], [], []
    for j in range(group_threshold.shape[0]):
        clipped = jnp.where(jnp.isfinite(group_threshold[j]), jnp.minimum(inv_rate, group_threshold[j]), 0.0)
        per_step.append(chunk_moments(clipped, weight3, axis=(0, 1)))  # [T] each
        run_means.append(clipped.mean(axis=2))  # [n, R]
        over_threshold.append(_weigh(inv_rate > group_threshold[j], weight3).sum())
    clipped_per_step = tuple(jnp.stack(parts, axis=-1) for parts in zip(*per_step))  # [T, J]
    over_threshold = jnp.stack(over_threshold)  # [J]
    fixed_energy = energy_local + tx_coeff * jnp.stack(run_means, axis=-1)[..., group]  # [n, R, K]
    weight4 = _expand(weight, 2)
    fixed_run = chunk_moments(fixed_energy, _expand(weight, 1), axis=(0, 1))
    fixed_trajectory = chunk_moments(fixed_energy.mean(axis=1), weight, axis=0)

    # Adaptive policies: one candidate per sample, chosen on the true or on the observed channel.
    decisions = {False: inv_rate, True: observed_inv_rate} if any(stale) else {False: inv_rate}
    if method == "breakpoints":
        # One searchsorted on the union of all policies' breakpoints serves every policy.
        segments = {flag: jnp.searchsorted(breakpoint_inv_rate, value, side="left", method="scan_unrolled")
                    for flag, value in decisions.items()}
        picks = jnp.stack([breakpoint_candidate[p][segments[flag]] for p, flag in enumerate(stale)], axis=-1)
    else:
        picks = []
        for mask, flag in zip(allowed, stale):
            energy_all, fits_all = sample_energy(energy_local, tx_coeff, threshold, decisions[flag])
            picks.append(select_argmin(energy_all, fits_all, mask))
        picks = jnp.stack(picks, axis=-1)  # [n, R, T, P]
    pick_local, pick_coeff, pick_threshold, pick_accuracy, pick_loss = (
        values[picks] for values in (energy_local, tx_coeff, threshold, accuracy, loss))

    x = inv_rate[..., None]
    fits = x <= pick_threshold
    adaptive_energy = pick_local + jnp.where(pick_coeff > 0, pick_coeff * jnp.minimum(x, pick_threshold), 0.0)
    adaptive_per_step = chunk_moments(adaptive_energy, weight4, axis=(0, 1))  # [T, P]
    adaptive_mean = adaptive_energy.mean(axis=2)  # [n, R, P]
    split_of_pick = jax.nn.one_hot(split, num_splits, dtype=jnp.float32)  # [K, L+1]
    if method == "breakpoints":
        # Per-step counts below each breakpoint give the count per segment, and each policy's split is
        # constant on a segment; this avoids a one-hot per sample.
        runs = (valid.sum() if padded else valid.shape[0]) * realizations
        per_segment = {}
        for flag, value in decisions.items():
            below = jnp.stack([_weigh(value <= v, weight3).sum(axis=(0, 1), dtype=jnp.float32)
                               for v in breakpoint_inv_rate], -1).reshape(steps, -1)
            below = jnp.concatenate([jnp.zeros((steps, 1)), below, jnp.full((steps, 1), runs, jnp.float32)], -1)
            per_segment[flag] = jnp.diff(below, axis=-1)  # [T, U + 1]
        split_count_per_step = jnp.stack([per_segment[flag] @ split_of_pick[breakpoint_candidate[p]]
                                          for p, flag in enumerate(stale)])  # [P, T, L+1]
    else:
        split_count_per_step = jnp.moveaxis(_weigh(split_of_pick[picks], _expand(weight, 3)).sum(axis=(0, 1)), 0, 1)

    log_inv_rate = jnp.log10(inv_rate)
    low, high = HISTOGRAM_LOG10_RANGE
    bins = jnp.clip(jnp.floor((log_inv_rate - low) / (high - low) * HISTOGRAM_BINS), 0, HISTOGRAM_BINS - 1)
    bins = jnp.where(jnp.isnan(bins), HISTOGRAM_BINS - 1, bins).astype(jnp.int32)
    counted = jnp.ones(bins.shape, jnp.float32) if weight is None else jnp.broadcast_to(weight[..., None], bins.shape)
    histogram = jax.ops.segment_sum(counted.ravel(), bins.ravel(),
                                    num_segments=HISTOGRAM_BINS)

    # A policy that decides on an observed channel is not a function of the true inverse rate alone, so its
    # energy is binned directly.
    stale_index = [p for p, flag in enumerate(stale) if flag]
    energy_histogram = jnp.zeros((len(stale), ENERGY_BINS))
    if stale_index:
        low, high = ENERGY_LOG10_RANGE
        stale_energy = adaptive_energy[..., jnp.asarray(stale_index)]
        energy_bins = jnp.clip(jnp.floor((jnp.log10(stale_energy) - low) / (high - low) * ENERGY_BINS), 0,
                               ENERGY_BINS - 1).astype(jnp.int32) + ENERGY_BINS * jnp.arange(len(stale_index))
        energy_counted = jnp.broadcast_to(counted[..., None], energy_bins.shape)
        binned = jax.ops.segment_sum(energy_counted.ravel(), energy_bins.ravel(),
                                     num_segments=ENERGY_BINS * len(stale_index)).reshape(-1, ENERGY_BINS)
        energy_histogram = energy_histogram.at[jnp.asarray(stale_index)].set(binned)

    return {
        "clipped_per_step": clipped_per_step,
        "over_threshold": over_threshold,
        "fixed_run": fixed_run,
        "fixed_trajectory": fixed_trajectory,
        "adaptive_per_step": adaptive_per_step,
        "adaptive_run": chunk_moments(adaptive_mean, _expand(weight, 1), axis=(0, 1)),
        "adaptive_trajectory": chunk_moments(adaptive_mean.mean(axis=1), weight, axis=0),
        "adaptive_accuracy_sum": _weigh(pick_accuracy * fits, weight4).sum(axis=(0, 1, 2)),
        "adaptive_loss_sum": _weigh(pick_loss, weight4).sum(axis=(0, 1, 2)),
        "adaptive_outage": _weigh(~fits, weight4).sum(axis=(0, 1, 2), dtype=jnp.float32),
        "split_count_per_step": split_count_per_step,  # [P, T, L+1]
        "histogram": histogram,
        "energy_histogram": energy_histogram,  # [P, bins], zero rows for policies deciding on the true channel
    }


@dataclasses.dataclass
class StudyStats:
    """Merged statistics of every stream: the K candidates, then the P adaptive policies.

    Energies are J per inference. "Run" units are the mean over the T steps
    of one (trajectory, realization); "trajectory" units average a
    trajectory's R realizations too.

    Attributes:
        energy: Moments over all samples, [S].
        energy_per_step: Moments over (trajectory, realization) at each step, [T, S].
        run_energy: Moments of run means, [S].
        trajectory_energy: Moments of trajectory means, [S]; its ci95 is the
            confidence interval of the mean energy.
        outage_share: share of inferences whose payload missed the cap, [S].
        accuracy: effective accuracy (a failed inference counts as wrong), [S].
        loss: mean test loss of the chosen candidates, [S].
        split_count_per_step: adaptive policies' choices per split, [P, T, L+1].
        quantiles: energy quantiles from the inverse-rate histogram, [len(QUANTILES), S].
        samples, trajectories, realizations: the study size.
    """

    energy: Moments
    energy_per_step: Moments
    run_energy: Moments
    trajectory_energy: Moments
    outage_share: np.ndarray
    accuracy: np.ndarray
    loss: np.ndarray
    split_count_per_step: np.ndarray
    quantiles: np.ndarray
    samples: int
    trajectories: int
    realizations: int
    chunk_size: int = 0
    devices: int = 1

    def ci95(self) -> tuple[np.ndarray, np.ndarray]:
        """95% interval of the mean energy from independent units: trajectories, or runs when N = 1."""
        units = self.trajectory_energy if self.trajectories > 1 else self.run_energy
        return units.ci95()

    def variance_components(self) -> dict[str, np.ndarray]:
        """Split the variance of run means into path (between trajectories) and fading (between realizations).

        With m_ir the run means and m_i their trajectory means,
        ``sum (m_ir - m)^2 = sum (m_ir - m_i)^2 + R sum (m_i - m)^2``.
        Returns per-stream variances [S]; the fading part is zero when R = 1.
        """
        n, r = self.trajectories, self.realizations
        between = self.trajectory_energy.variance
        within_m2 = np.maximum(self.run_energy.m2 - r * self.trajectory_energy.m2, 0.0)
        within = within_m2 / (n * (r - 1)) if r > 1 else np.zeros_like(between)
        return {"between_trajectories": between, "between_realizations": within}


def _moments(triple) -> Moments:
    return Moments.from_chunk(*triple)


def _merge_over_steps(per_step: Moments) -> Moments:
    """Merge per-step moments [T, S] into moments over all samples [S] (Chan et al.)."""
    count = per_step.count.sum(axis=0)
    mean = (per_step.count * per_step.mean).sum(axis=0) / np.maximum(count, 1.0)
    m2 = per_step.m2.sum(axis=0) + (per_step.count * (per_step.mean - mean) ** 2).sum(axis=0)
    return Moments(count, mean, m2)


def _energy_at(table: CandidateTable, tables: SelectionTables, inv_rate: np.ndarray) -> np.ndarray:
    """Energy of every candidate at given inverse rates, float64 [len(inv_rate), K], on the host."""
    threshold = tables.threshold.astype(np.float64)
    sends = table.tx_coeff > 0
    clipped = np.minimum(inv_rate[:, None], np.where(sends, threshold, 0.0))
    return table.energy_local_j + np.where(sends, table.tx_coeff * clipped, 0.0)


def _weighted_quantiles(values: np.ndarray, weights: np.ndarray, levels) -> np.ndarray:
    """Quantiles of each column of ``values`` [bins, S] under bin weights [bins]."""
    out = np.empty((len(levels), values.shape[1]))
    for column in range(values.shape[1]):
        order = np.argsort(values[:, column], kind="stable")
        cumulative = np.cumsum(weights[order])
        positions = np.searchsorted(cumulative, np.asarray(levels) * cumulative[-1], side="left")
        out[:, column] = values[order, column][np.minimum(positions, len(order) - 1)]
    return out


def simulate(table: CandidateTable, link: LinkModel, allowed: np.ndarray, *, trajectories: int, realizations: int = 1,
             chunk_size: int | None = None, memory_budget_bytes: float = 512 * 2**20, method: str = "breakpoints",
             deadline_s: float | None = None, stale=None, key: jax.Array,
             progress: bool = True) -> tuple[StudyStats, tuple]:
    """Run the Monte-Carlo study; return the merged statistics of every stream and each policy's Breakpoints.

    Args:
        table: K candidates (costs, payloads, test accuracy and loss, split).
        link: path gain per step (its length is T), fading correlation and radio.
        allowed: bool [P, K], the candidate set of each adaptive policy (P >= 1).
        trajectories: N. realizations: R independent fading draws per trajectory.
        chunk_size: trajectories per jitted call; None derives it from
            ``memory_budget_bytes``. Rounded up to a multiple of the device count.
        method: ``"breakpoints"`` (searchsorted) or ``"argmin"`` (brute force).
        deadline_s: latency deadline [s], or None. With a deadline the
            transmission cap of candidate k is ``deadline - local_latency_k``,
            else the step duration ``link.step_s``.
        stale: bool [P], policies that decide on the observed channel
            (``link.spec.csi_*``); None means none.
        key: PRNG key of the study.

    The trajectory axis of each chunk is sharded over all local devices.
    """
    if method not in SELECTION_METHODS:
        raise ValueError(f"select.method must be one of {', '.join(SELECTION_METHODS)}, got {method!r}")
    allowed = np.atleast_2d(np.asarray(allowed, bool))
    stale = [bool(flag) and link.spec.stale_csi for flag in (stale if stale is not None else [False] * len(allowed))]

    # Policies with the same candidate set deciding on the same channel are the same policy: simulate it once.
    signatures = [(mask.tobytes(), flag) for mask, flag in zip(allowed, stale)]
    distinct = list(dict.fromkeys(signatures))
    if len(distinct) < len(signatures):
        first = [signatures.index(signature) for signature in distinct]
        stats, envelopes = simulate(table, link, allowed[first], trajectories=trajectories, realizations=realizations,
                                    chunk_size=chunk_size, memory_budget_bytes=memory_budget_bytes, method=method,
                                    deadline_s=deadline_s, stale=[stale[i] for i in first], key=key,
                                    progress=progress)
        expand = [distinct.index(signature) for signature in signatures]
        return _expand_policies(stats, len(table), expand), tuple(envelopes[i] for i in expand)
    stale = tuple(stale)
    steps = link.spec.steps
    tables = build_selection_tables(table, allowed, transmit_caps(table, link.step_s, deadline_s))
    devices = jax.devices()

    if chunk_size is None:
        per_sample = bytes_per_sample(len(tables.group_threshold), len(allowed), len(table), method)
        chunk_size = chunk_trajectories(memory_budget_bytes, realizations, steps, per_sample, len(devices),
                                        jax.default_backend())
    chunk_size = min(chunk_size, trajectories)
    chunk_size = math.ceil(chunk_size / len(devices)) * len(devices)
    sharding = NamedSharding(Mesh(np.asarray(devices), ("trajectory",)), PartitionSpec("trajectory"))

    constants = dict(
        channel_arrays=link.arrays,
        energy_local=jnp.asarray(table.energy_local_j, jnp.float32), tx_coeff=jnp.asarray(table.tx_coeff, jnp.float32),
        threshold=jnp.asarray(tables.threshold), group_threshold=jnp.asarray(tables.group_threshold),
        group=jnp.asarray(tables.group), accuracy=jnp.asarray(table.accuracy, jnp.float32),
        loss=jnp.asarray(table.loss, jnp.float32), split=jnp.asarray(table.split, jnp.int32),
        allowed=jnp.asarray(allowed), breakpoint_inv_rate=jnp.asarray(tables.breakpoint_inv_rate),
        breakpoint_candidate=jnp.asarray(tables.breakpoint_candidate))
    num_splits = int(table.split.max()) + 1

    def merge(totals, out):
        chunk = {name: (_moments(value) if isinstance(value, tuple) else np.asarray(value, np.float64))
                 for name, value in jax.device_get(out).items()}
        if totals is None:
            return chunk
        return {name: (totals[name].merge(value) if isinstance(value, Moments) else totals[name] + value)
                for name, value in chunk.items()}

    totals, pending = None, None
    starts = range(0, trajectories, chunk_size)
    log.info("Monte Carlo: %d trajectories x %d realizations x %d steps in %d chunks of %d trajectories on %d device(s)",
             trajectories, realizations, steps, len(starts), chunk_size, len(devices))
    for start in tqdm(starts, desc="monte carlo", unit="chunk", disable=not progress, leave=False):
        index = np.arange(start, start + chunk_size)
        valid = index < trajectories
        out = _run_chunk(key, jax.device_put(index.astype(np.uint32), sharding), jax.device_put(valid, sharding),
                         **constants, spec=link.spec, realizations=realizations, method=method,
                         num_splits=num_splits, padded=not valid.all(), stale=stale)
        # Dispatch is asynchronous: the host merges the previous chunk while this one computes.
        if pending is not None:
            totals = merge(totals, pending)
        pending = out
    totals = merge(totals, pending)

    stats = _finalize(totals, table, tables, trajectories, realizations, steps)
    return dataclasses.replace(stats, chunk_size=chunk_size, devices=len(devices)), tables.envelopes


def _expand_policies(stats: StudyStats, num_candidates: int, index: list[int]) -> StudyStats:
    """Repeat the adaptive streams of ``stats`` so that stream K + p is policy ``index[p]``."""
    streams = np.concatenate([np.arange(num_candidates), num_candidates + np.asarray(index)])

    def pick(moments: Moments) -> Moments:
        count = moments.count if np.ndim(moments.count) == 0 else moments.count[..., streams]
        return Moments(count, moments.mean[..., streams], moments.m2[..., streams])

    return dataclasses.replace(
        stats, energy=pick(stats.energy), energy_per_step=pick(stats.energy_per_step),
        run_energy=pick(stats.run_energy), trajectory_energy=pick(stats.trajectory_energy),
        outage_share=stats.outage_share[streams], accuracy=stats.accuracy[streams], loss=stats.loss[streams],
        split_count_per_step=stats.split_count_per_step[np.asarray(index)], quantiles=stats.quantiles[:, streams])


def _finalize(totals: dict, table: CandidateTable, tables: SelectionTables, trajectories: int, realizations: int,
              steps: int) -> StudyStats:
    """Turn merged chunk reductions into per-stream statistics."""
    samples = trajectories * realizations * steps
    clipped = totals["clipped_per_step"]  # [T, J]
    # The float32 values the device used for the adaptive streams, so that a policy that always picks candidate
    # k reports exactly candidate k's energy up to summation rounding.
    local = table.energy_local_j.astype(np.float32).astype(np.float64)
    coeff = table.tx_coeff.astype(np.float32).astype(np.float64)
    group = tables.group

    fixed_per_step = Moments(clipped.count[:, group], local + coeff * clipped.mean[:, group],
                             coeff**2 * clipped.m2[:, group])
    adaptive_per_step = totals["adaptive_per_step"]
    per_step = Moments(np.concatenate([fixed_per_step.count, adaptive_per_step.count], axis=1),
                       np.concatenate([fixed_per_step.mean, adaptive_per_step.mean], axis=1),
                       np.concatenate([fixed_per_step.m2, adaptive_per_step.m2], axis=1))

    def joined(fixed: Moments, adaptive: Moments) -> Moments:
        return Moments(np.concatenate([np.broadcast_to(fixed.count, fixed.mean.shape),
                                       np.broadcast_to(adaptive.count, adaptive.mean.shape)]),
                       np.concatenate([fixed.mean, adaptive.mean]), np.concatenate([fixed.m2, adaptive.m2]))

    fixed_outage = totals["over_threshold"][group] / samples
    outage = np.concatenate([fixed_outage, totals["adaptive_outage"] / samples])
    accuracy = np.concatenate([table.accuracy * (1.0 - fixed_outage), totals["adaptive_accuracy_sum"] / samples])
    loss = np.concatenate([table.loss, totals["adaptive_loss_sum"] / samples])

    low, high = HISTOGRAM_LOG10_RANGE
    centres = 10.0 ** (low + (np.arange(HISTOGRAM_BINS) + 0.5) * (high - low) / HISTOGRAM_BINS)
    fixed_energy = _energy_at(table, tables, centres)  # [bins, K]
    rows = np.arange(len(centres))
    adaptive_energy = np.stack([fixed_energy[rows, e.candidate[np.searchsorted(e.inv_rate, centres, side="left")]]
                                for e in tables.envelopes], axis=1)
    quantiles = _weighted_quantiles(np.concatenate([fixed_energy, adaptive_energy], axis=1), totals["histogram"],
                                    QUANTILES)
    low, high = ENERGY_LOG10_RANGE
    energy_centres = 10.0 ** (low + (np.arange(ENERGY_BINS) + 0.5) * (high - low) / ENERGY_BINS)
    for p, counts in enumerate(totals["energy_histogram"]):
        if counts.sum() > 0:  # a policy deciding on the observed channel
            quantiles[:, len(table) + p] = _weighted_quantiles(energy_centres[:, None], counts, QUANTILES)[:, 0]

    return StudyStats(energy=_merge_over_steps(per_step), energy_per_step=per_step,
                      run_energy=joined(totals["fixed_run"], totals["adaptive_run"]),
                      trajectory_energy=joined(totals["fixed_trajectory"], totals["adaptive_trajectory"]),
                      outage_share=outage, accuracy=accuracy, loss=loss,
                      split_count_per_step=totals["split_count_per_step"], quantiles=quantiles, samples=samples,
                      trajectories=trajectories, realizations=realizations)
