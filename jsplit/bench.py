"""Throughput benchmark of the Monte-Carlo engine against the hardware ceiling and plain implementations.

    python -m jsplit.bench [--json FILE] [--trajectories N] [--steps T] [--max-samples S]

Measures in one run, at the same shapes and on the default channel:

* the full pipeline (``montecarlo.simulate``: fading, rate, every policy, all
  statistics), in samples (trajectory-steps) per second;
* the ceiling kernel: only drawing the same fading and taking ``log2(1 + snr)``;
* a plain vectorised NumPy implementation of the same model, on a subset;
* a per-sample Python loop, on a smaller subset;
* the pipeline at K = 8, 64 and 512 candidates (more compression levels);
* wall time and peak RSS of whole studies as N x T grows, each in a fresh process.

The candidate table uses LeNet-300-100's real layer sizes and magnitude masks
of a randomly initialised network, so the costs are those of the real model.
Test accuracies are a smooth stand-in, because only the budget mask depends on
them.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jsplit.channel import LinkModel, build_link, trajectory_inverse_rates
from jsplit.compress import candidate_grid, magnitude_mask
from jsplit.model import build_network
from jsplit.montecarlo import bytes_per_sample, chunk_trajectories, simulate
from jsplit.profile import CandidateTable, EnergyProfile, build_table
from jsplit.select import adaptive_masks, budget_mask, transmit_thresholds

log = logging.getLogger("jsplit.bench")
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def default_config(steps: int):
    """Compose the default configuration of conf/config.yaml with ``mc.steps`` set."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=[f"mc.steps={steps}"])


def candidate_table(levels: int, cfg) -> CandidateTable:
    """LeNet-300-100 candidates with ``levels`` compression levels (8 candidates per level)."""
    net = build_network("lenet300100", (300, 100, 10))
    dense = net.init(jax.random.PRNGKey(0))
    sparsities = [0.0] + list(np.linspace(0.3, 0.97, levels - 1))
    models = [dense] + [jax.tree.map(lambda p, m: p * m, dense, magnitude_mask(dense, s)) for s in sparsities[1:]]
    grid = candidate_grid(sparsities, net.num_layers, [32, 16, 8])
    accuracy = 0.983 - 0.02 * grid.sparsity**6 - 0.0005 * (grid.activation_bits == 8)
    profile = EnergyProfile.from_config(cfg.energy)
    return build_table(net, models, grid, 0.07 + 0.1 * grid.sparsity**6, accuracy, profile, tx_power_w=0.2)


def policy_sets(table: CandidateTable) -> np.ndarray:
    masks = adaptive_masks(table, budget_mask(table, 1.0))
    return np.stack([masks["adaptive"], masks["adaptive_uncompressed"]])


def time_pipeline(table, link, trajectories: int, chunk_size: int | None = None, method: str = "breakpoints",
                  repeats: int = 1) -> float:
    """Median samples per second of ``simulate`` over ``repeats`` runs, after a warm-up run that compiles."""
    allowed = policy_sets(table)
    options = dict(chunk_size=chunk_size, method=method, progress=False)
    simulate(table, link, allowed, trajectories=trajectories, key=jax.random.PRNGKey(1), **options)
    rates = []
    for repeat in range(repeats):
        start = time.perf_counter()
        stats, _ = simulate(table, link, allowed, trajectories=trajectories, key=jax.random.PRNGKey(2 + repeat),
                            **options)
        rates.append(stats.samples / (time.perf_counter() - start))
    return float(np.median(rates))


def time_ceiling(link: LinkModel, trajectories: int, chunk_size: int, repeats: int = 1) -> float:
    """Median samples per second of drawing the same fading and computing 1 / log2(1 + snr), nothing else."""
    steps = link.spec.steps

    @jax.jit
    def kernel(key, index):
        def one(i):
            base = jax.random.fold_in(key, i)
            return trajectory_inverse_rates(link.spec, link.arrays, base, jax.random.fold_in(base, 0)[None])[0]

        return jax.vmap(one)(index).sum()  # reduced so that nothing is dead code

    key = jax.random.PRNGKey(2)
    kernel(key, jnp.arange(chunk_size, dtype=jnp.uint32)).block_until_ready()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for first in range(0, trajectories, chunk_size):
            kernel(key, jnp.arange(first, first + chunk_size, dtype=jnp.uint32)).block_until_ready()
        rates.append(math.ceil(trajectories / chunk_size) * chunk_size * steps / (time.perf_counter() - start))
    return float(np.median(rates))


def numpy_study(table: CandidateTable, link: LinkModel, allowed: np.ndarray, trajectories: int, chunk: int = 100):
    """Run the same model in plain vectorised NumPy: per-candidate energies, argmin policies, per-step means.

    Returns (per-candidate mean energy [K], per-policy mean energy [P]).
    """
    rng = np.random.default_rng(0)
    steps, rho = len(link.path_gain), link.rho
    threshold = transmit_thresholds(table.bits_sent, link.step_s).astype(np.float64)
    sends = table.tx_coeff > 0
    candidate_sum = np.zeros(len(table))
    policy_sum = np.zeros(len(allowed))
    per_step_sum = np.zeros((steps, len(allowed)))

    for first in range(0, trajectories, chunk):
        n = min(chunk, trajectories - first)
        w = (rng.standard_normal((n, steps)) + 1j * rng.standard_normal((n, steps))) * math.sqrt(0.5)
        h = np.empty_like(w)
        h[:, 0] = w[:, 0]
        for step in range(1, steps):
            h[:, step] = rho * h[:, step - 1] + math.sqrt(1 - rho * rho) * w[:, step]
        snr = link.tx_power_w * link.path_gain * np.abs(h) ** 2 / (link.noise_density_w_per_hz * link.bandwidth_hz)
        x = 1.0 / (link.bandwidth_hz * np.log2(1.0 + snr))

        energy = table.energy_local_j + np.where(sends, table.tx_coeff * np.minimum(x[..., None], threshold), 0.0)
        fits = x[..., None] <= threshold
        candidate_sum += energy.sum(axis=(0, 1))
        for p, mask in enumerate(allowed):
            feasible = fits & mask
            choice = np.where(feasible.any(-1), np.argmin(np.where(feasible, energy, np.inf), -1),
                              np.argmin(np.where(mask, energy, np.inf), -1))
            chosen = np.take_along_axis(energy, choice[..., None], -1)[..., 0]
            policy_sum[p] += chosen.sum()
            per_step_sum[:, p] += chosen.sum(axis=0)

    samples = trajectories * steps
    return candidate_sum / samples, policy_sum / samples


def python_loop_study(table: CandidateTable, link: LinkModel, allowed: np.ndarray, trajectories: int):
    """Run the same model one sample at a time in plain Python; return the per-policy mean energy [P]."""
    generator = random.Random(0)
    steps, rho = len(link.path_gain), link.rho
    innovation = math.sqrt(1 - rho * rho)
    threshold = [float(t) for t in transmit_thresholds(table.bits_sent, link.step_s)]
    local, coeff = [float(c) for c in table.energy_local_j], [float(a) for a in table.tx_coeff]
    pools = [[k for k in range(len(table)) if mask[k]] for mask in allowed]
    totals = [0.0] * len(allowed)

    for _ in range(trajectories):
        h = complex(generator.gauss(0, 1), generator.gauss(0, 1)) * math.sqrt(0.5)
        for step in range(steps):
            if step:
                h = rho * h + innovation * complex(generator.gauss(0, 1), generator.gauss(0, 1)) * math.sqrt(0.5)
            snr = link.tx_power_w * link.path_gain[step] * abs(h) ** 2 / (link.noise_density_w_per_hz * link.bandwidth_hz)
            x = 1.0 / (link.bandwidth_hz * math.log2(1.0 + snr))
            for p, pool in enumerate(pools):
                best, best_fits = math.inf, False
                for k in pool:
                    fits = x <= threshold[k]
                    energy = local[k] + (coeff[k] * min(x, threshold[k]) if coeff[k] > 0 else 0.0)
                    if (fits and not best_fits) or (fits == best_fits and energy < best):
                        best, best_fits = energy, fits
                totals[p] += best
    return [total / (trajectories * steps) for total in totals]


def probe(trajectories: int, steps: int) -> dict:
    """Run one whole study in this process and return its time and peak RSS."""
    cfg = default_config(steps)
    table = candidate_table(5, cfg)
    link = build_link(cfg)
    start = time.perf_counter()
    stats, _ = simulate(table, link, policy_sets(table), trajectories=trajectories, key=jax.random.PRNGKey(0),
                        progress=False)
    seconds = time.perf_counter() - start
    return {"samples": stats.samples, "trajectories": trajectories, "steps": steps, "seconds": seconds,
            "samples_per_s": stats.samples / seconds, "chunk_size": stats.chunk_size,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def probe_in_subprocess(trajectories: int, steps: int) -> dict:
    completed = subprocess.run([sys.executable, "-m", "jsplit.bench", "--probe", str(trajectories), str(steps)],
                               capture_output=True, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run_benchmark(trajectories: int, steps: int, max_samples: float, repeats: int) -> dict:
    cfg = default_config(steps)
    link = build_link(cfg)
    table = candidate_table(5, cfg)
    allowed = policy_sets(table)
    # The pipeline's default chunk on this machine; the ceiling kernel uses the same.
    per_sample = bytes_per_sample(len(np.unique(table.bits_sent)), len(policy_sets(table)), len(table),
                                  "breakpoints")
    chunk = min(trajectories, chunk_trajectories(512 * 2**20, 1, steps, per_sample, len(jax.devices()),
                                                 jax.default_backend()))
    results = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                           "cpu_count": os.cpu_count(), "jax": jax.__version__,
                           "devices": [str(d) for d in jax.devices()]},
               "shape": {"trajectories": trajectories, "steps": steps, "candidates": len(table),
                         "chunk_trajectories": chunk}}

    log.info("pipeline and ceiling kernel at %d x %d, K = %d, alternating %d times", trajectories, steps,
             len(table), repeats)
    pipeline_rates, ceiling_rates = [], []
    for _ in range(repeats):  # alternating, so that both see the same machine load
        pipeline_rates.append(time_pipeline(table, link, trajectories, chunk))
        ceiling_rates.append(time_ceiling(link, trajectories, chunk))
    results["pipeline_samples_per_s"] = float(np.median(pipeline_rates))
    results["ceiling_samples_per_s"] = float(np.median(ceiling_rates))
    results["pipeline_runs_samples_per_s"] = pipeline_rates
    results["ceiling_runs_samples_per_s"] = ceiling_rates
    results["pipeline_argmin_samples_per_s"] = time_pipeline(table, link, trajectories // 4, chunk, method="argmin")

    numpy_trajectories = max(1, trajectories // 20)
    log.info("NumPy on %d trajectories", numpy_trajectories)
    start = time.perf_counter()
    numpy_study(table, link, allowed, numpy_trajectories)
    results["numpy_samples_per_s"] = numpy_trajectories * steps / (time.perf_counter() - start)

    loop_trajectories = max(1, trajectories // 500)
    log.info("Python loop on %d trajectories", loop_trajectories)
    start = time.perf_counter()
    python_loop_study(table, link, allowed, loop_trajectories)
    results["python_loop_samples_per_s"] = loop_trajectories * steps / (time.perf_counter() - start)

    results["k_scaling"], results["k_scaling_argmin"] = {}, {}
    for levels in (1, 8, 64):
        scaled = candidate_table(levels, cfg)
        log.info("K = %d", len(scaled))
        results["k_scaling"][len(scaled)] = time_pipeline(scaled, link, trajectories, chunk, repeats=repeats)
        results["k_scaling_argmin"][len(scaled)] = time_pipeline(scaled, link, trajectories // 4, chunk // 4,
                                                                 method="argmin")

    results["size_scaling"] = []
    size = 10**6
    while size <= max_samples:
        log.info("whole study of %.0e samples in a fresh process", size)
        results["size_scaling"].append(probe_in_subprocess(max(1, size // 1000), 1000))
        size *= 10
    results["peak_rss_bytes"] = max((p["peak_rss_bytes"] for p in results["size_scaling"]), default=0)

    pipeline = results["pipeline_samples_per_s"]
    k_values = sorted(results["k_scaling"])
    results["ratios"] = {
        "pipeline_over_ceiling": pipeline / results["ceiling_samples_per_s"],
        "pipeline_over_numpy": pipeline / results["numpy_samples_per_s"],
        "pipeline_over_python_loop": pipeline / results["python_loop_samples_per_s"],
        "time_k_max_over_k_min": results["k_scaling"][k_values[0]] / results["k_scaling"][k_values[-1]],
    }
    return results


def print_report(results: dict) -> None:
    shape = results["shape"]
    lines = [f"shape: {shape['trajectories']} trajectories x {shape['steps']} steps, K = {shape['candidates']}",
             f"pipeline          {results['pipeline_samples_per_s']:14.4g} samples/s",
             f"pipeline (argmin) {results['pipeline_argmin_samples_per_s']:14.4g} samples/s",
             f"ceiling kernel    {results['ceiling_samples_per_s']:14.4g} samples/s",
             f"NumPy             {results['numpy_samples_per_s']:14.4g} samples/s",
             f"Python loop       {results['python_loop_samples_per_s']:14.4g} samples/s"]
    lines += [f"K = {k:4d}          {v:14.4g} samples/s (argmin {results['k_scaling_argmin'][k]:.4g})"
              for k, v in results["k_scaling"].items()]
    lines += [f"{p['samples']:.0e} samples: {p['seconds']:.1f} s, {p['samples_per_s']:.4g} samples/s, "
              f"peak RSS {p['peak_rss_bytes'] / 2**20:.0f} MiB" for p in results["size_scaling"]]
    lines += [f"{name}: {value:.3g}" for name, value in results["ratios"].items()]
    sys.stdout.write("\n".join(lines) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--trajectories", type=int, default=2000, help="trajectories per timing (default 2000)")
    parser.add_argument("--steps", type=int, default=1000, help="steps per trajectory (default 1000)")
    parser.add_argument("--max-samples", type=float, default=1e8,
                        help="largest whole study of the size scaling, in samples (default 1e8; 1e9 takes minutes)")
    parser.add_argument("--repeats", type=int, default=5, help="timings per figure; medians are reported (default 5)")
    parser.add_argument("--probe", type=int, nargs=2, metavar=("N", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)

    if args.probe:
        sys.stdout.write(json.dumps(probe(*args.probe)) + "\n")
        return
    for name in ("trajectories", "steps", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer, got {getattr(args, name)}")

    results = run_benchmark(args.trajectories, args.steps, args.max_samples, args.repeats)
    print_report(results)
    if args.json:
        partial = args.json.with_name(args.json.name + ".partial")
        partial.write_text(json.dumps(results, indent=2))
        os.replace(partial, args.json)


if __name__ == "__main__":
    main()
