"""The chunked Monte-Carlo engine: draw the channel, select per policy, reduce.

A study is N trajectories x T steps. Trajectories are processed in chunks of
``chunk_size``; each chunk is one jitted call that draws the fading of its
trajectories, evaluates every candidate at every step, runs the per-step
policies and reduces everything to moments. The host merges chunks in
float64, so memory is bounded by the chunk, not by N.

Streams: the first K streams are the candidates themselves (a fixed policy is
one candidate for the whole run), followed by one stream per adaptive policy.
"""

from __future__ import annotations

import dataclasses
import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jsplit.channel import LinkModel, rayleigh_gauss_markov, shannon_rate
from jsplit.profile import CandidateTable
from jsplit.select import sample_energy, select_argmin
from jsplit.stats import Moments, chunk_moments

log = logging.getLogger(__name__)


@dataclasses.dataclass
class StreamStats:
    """Reduced results of every stream (K candidates, then P adaptive policies).

    Attributes:
        energy: Moments over all samples, shape [S] (J per inference).
        energy_per_step: Moments over trajectories at each step, shape [T, S].
        trajectory_energy: Moments of per-trajectory mean energies, shape [S];
            its ci95 is the confidence interval of the mean energy.
        accuracy_sum: sum of effective accuracy (0 on failure), [S].
        loss_sum: sum of the chosen candidates' test loss, [S].
        outage_count: inferences whose payload did not fit the cap, [S].
        split_count_per_step: adaptive policies' choices per split, [P, T, L+1].
        candidate_count: adaptive policies' choices per candidate, [P, K].
        samples: number of (trajectory, step) samples.
    """

    energy: Moments
    energy_per_step: Moments
    trajectory_energy: Moments
    accuracy_sum: np.ndarray
    loss_sum: np.ndarray
    outage_count: np.ndarray
    split_count_per_step: np.ndarray
    candidate_count: np.ndarray
    samples: int

    def merge(self, other: "StreamStats") -> "StreamStats":
        return StreamStats(
            energy=self.energy.merge(other.energy),
            energy_per_step=self.energy_per_step.merge(other.energy_per_step),
            trajectory_energy=self.trajectory_energy.merge(other.trajectory_energy),
            accuracy_sum=self.accuracy_sum + other.accuracy_sum,
            loss_sum=self.loss_sum + other.loss_sum,
            outage_count=self.outage_count + other.outage_count,
            split_count_per_step=self.split_count_per_step + other.split_count_per_step,
            candidate_count=self.candidate_count + other.candidate_count,
            samples=self.samples + other.samples,
        )


@functools.partial(jax.jit, static_argnames=("steps", "num_splits", "cap_s", "tx_power_w"))
def _run_chunk(key, trajectory_index, valid, path_gain, rho, bandwidth_hz, noise_density, energy_local, bits_sent,
               accuracy, loss, split, allowed, *, steps, num_splits, cap_s, tx_power_w):
    """Simulate one chunk of trajectories and reduce it; shapes as in ``simulate``."""
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, trajectory_index)
    fading = jax.vmap(rayleigh_gauss_markov, in_axes=(0, None, None))(keys, steps, rho)  # [n, T]
    rate = shannon_rate(bandwidth_hz, tx_power_w, path_gain[None, :] * fading, noise_density)
    energy, fits = sample_energy(energy_local, bits_sent, 1.0 / rate, cap_s, tx_power_w)  # [n, T, K]

    picks = jax.vmap(select_argmin, in_axes=(None, None, 0))(energy, fits, allowed)  # [P, n, T]
    picks = jnp.moveaxis(picks, 0, -1)  # [n, T, P]
    stream_energy = jnp.concatenate([energy, jnp.take_along_axis(energy, picks, axis=-1)], axis=-1)
    stream_fits = jnp.concatenate([fits, jnp.take_along_axis(fits, picks, axis=-1)], axis=-1)
    num_candidates = energy.shape[-1]
    stream_candidate = jnp.concatenate(
        [jnp.broadcast_to(jnp.arange(num_candidates), energy.shape), picks], axis=-1)  # [n, T, S]

    weight = valid.astype(jnp.float32)[:, None, None]  # [n, 1, 1]
    effective_accuracy = accuracy[stream_candidate] * stream_fits
    trajectory_mean = stream_energy.mean(axis=1)  # [n, S]
    split_one_hot = jax.nn.one_hot(split[picks], num_splits, dtype=jnp.float32) * weight[..., None]
    candidate_one_hot = jax.nn.one_hot(picks, num_candidates, dtype=jnp.float32) * weight[..., None]

    return {
        "energy": chunk_moments(stream_energy, weight, axis=(0, 1)),
        "energy_per_step": chunk_moments(stream_energy, weight, axis=0),
        "trajectory_energy": chunk_moments(trajectory_mean, weight[:, 0], axis=0),
        "accuracy_sum": (effective_accuracy * weight).sum(axis=(0, 1)),
        "loss_sum": (loss[stream_candidate] * weight).sum(axis=(0, 1)),
        "outage_count": ((~stream_fits) * weight).sum(axis=(0, 1)),
        "split_count_per_step": jnp.moveaxis(split_one_hot.sum(axis=0), 1, 0),  # [P, T, L+1]
        "candidate_count": candidate_one_hot.sum(axis=(0, 1)),  # [P, K]
    }


def simulate(table: CandidateTable, link: LinkModel, allowed: np.ndarray, *, trajectories: int, chunk_size: int,
             key: jax.Array, progress: bool = True) -> StreamStats:
    """Run the Monte-Carlo study and return the merged statistics of every stream.

    Args:
        table: K candidates with ``energy_local_j``, ``bits_sent``, ``accuracy``,
            ``loss`` and ``split``.
        link: path gain per step (its length is T), fading correlation and radio.
        allowed: bool [P, K], the candidate set of each adaptive policy.
        trajectories: N. chunk_size: trajectories per jitted call.
        key: PRNG key; trajectory i draws its fading from ``fold_in(key, i)``.

    The transmission cap is the step duration ``link.step_s``.
    """
    steps = len(link.path_gain)
    chunk_size = min(chunk_size, trajectories)
    num_splits = int(table.split.max()) + 1
    constants = dict(
        path_gain=jnp.asarray(link.path_gain, jnp.float32), rho=jnp.float32(link.rho),
        bandwidth_hz=jnp.float32(link.bandwidth_hz), noise_density=jnp.float32(link.noise_density_w_per_hz),
        energy_local=jnp.asarray(table.energy_local_j, jnp.float32), bits_sent=jnp.asarray(table.bits_sent, jnp.float32),
        accuracy=jnp.asarray(table.accuracy, jnp.float32), loss=jnp.asarray(table.loss, jnp.float32),
        split=jnp.asarray(table.split, jnp.int32), allowed=jnp.asarray(allowed, bool))

    total = None
    starts = range(0, trajectories, chunk_size)
    for start in tqdm(starts, desc="monte carlo", unit="chunk", disable=not progress, leave=False):
        index = np.arange(start, start + chunk_size)
        valid = index < trajectories
        out = _run_chunk(key, jnp.asarray(index, jnp.uint32), jnp.asarray(valid), **constants, steps=steps,
                         num_splits=num_splits, cap_s=float(link.step_s), tx_power_w=float(link.tx_power_w))
        out = jax.device_get(out)
        chunk = StreamStats(
            energy=Moments.from_chunk(*out["energy"]),
            energy_per_step=Moments.from_chunk(*out["energy_per_step"]),
            trajectory_energy=Moments.from_chunk(*out["trajectory_energy"]),
            accuracy_sum=np.asarray(out["accuracy_sum"], np.float64),
            loss_sum=np.asarray(out["loss_sum"], np.float64),
            outage_count=np.asarray(out["outage_count"], np.float64),
            split_count_per_step=np.asarray(out["split_count_per_step"], np.float64),
            candidate_count=np.asarray(out["candidate_count"], np.float64),
            samples=int(valid.sum()) * steps,
        )
        total = chunk if total is None else total.merge(chunk)
    return total
