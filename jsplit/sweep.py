"""Hydra entry point: ``python -m jsplit.sweep [-m] key=value ...``.

One job runs the whole pipeline (data, training or the cached model, pruning,
candidate evaluation, cost profile, Monte-Carlo channel simulation, policies)
and writes its results into the Hydra run directory. A multirun additionally
writes ``summary.csv`` and ``summary.png`` at the sweep root (see
``jsplit.report.SummaryCallback``).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sys
import time
from pathlib import Path

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from jsplit.config import ConfigError, validate

log = logging.getLogger("jsplit")


class _Timer:
    """Collects wall-clock seconds per pipeline stage."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def stage(self, name: str):
        timer = self

        class _Stage:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                timer.seconds[name] = timer.seconds.get(name, 0.0) + time.perf_counter() - self.start

        return _Stage()


def prepare_models(cfg, net, data):
    """Return the compressed models, their levels and activation ranges, the training record and the cache hit.

    Returns:
        (models, levels, clips, record, cache_hit, key): ``models`` contains one
        parameter pytree per level, stacked over ``train.seeds`` seeds, the
        dense float32 model first; ``levels`` the matching
        ``compress.Level``; ``clips`` float32 [levels, seeds, L]; ``key`` the
        cache key of the models.

    Parameters come from the Orbax cache when an entry with the same key
    exists. Otherwise the dense models are trained, pruned, fine-tuned and
    quantized, and the result is cached.
    """
    import jax

    from jsplit import cache
    from jsplit.compress import Level, PrunedModel, calibrate_clips, kernel_sparsity, prune_and_finetune, quantize_level
    from jsplit.quantize import FLOAT_BITS
    from jsplit.train import fit, seed_slice, stack_seeds

    compression, train = cfg.compression, cfg.train
    sparsities = sorted({float(s) for s in compression.sparsities if s > 0.0})
    structured = sorted({float(s) for s in compression.structured_sparsities if s > 0.0})
    weight_bits = sorted({int(b) for b in compression.weight_bits}, reverse=True)
    material = {
        "data_sha256": data.sha256, "train_size": len(data.x_train), "test_size": len(data.x_test),
        "model": OmegaConf.to_container(cfg.model), "train": OmegaConf.to_container(train), "seed": cfg.seed,
        "compression": {key: value for key, value in OmegaConf.to_container(compression).items()
                        if key != "activation_bits"} | {"sparsities": sparsities, "structured_sparsities": structured,
                                                         "weight_bits": weight_bits},
    }
    key = cache.cache_key(material)
    cached = cache.load(cfg.cache_dir, key)
    if cached is not None:
        tree, meta = cached
        log.info("loaded trained and compressed parameters from cache entry %s", cache.entry_path(cfg.cache_dir, key))
        levels = [Level(**level) for level in meta["levels"]]
        models = [tree["models"][str(i)] for i in range(len(levels))]
        return models, levels, np.asarray(tree["clips"], np.float32), meta["record"], True, key

    start = time.perf_counter()
    init_key, train_key, prune_key, quantize_key = jax.random.split(jax.random.PRNGKey(cfg.seed), 4)
    initial = stack_seeds([net.init(k) for k in jax.random.split(init_key, train.seeds)])
    common = dict(batch_size=train.batch_size, shift_px=train.shift_px)
    dense = fit(net, initial, data.x_train, data.y_train, data.x_test, data.y_test, epochs=train.epochs,
                learning_rate=train.learning_rate, key=train_key, description="train dense", stacked=True, **common)
    log.info("dense model: test accuracy %.4f after %d epochs (%.1f s)%s", dense.test_accuracy[-1], train.epochs,
             dense.seconds, f", {train.seeds} seeds: {', '.join(f'{a:.4f}' for a in dense.seed_accuracy)}"
             if train.seeds > 1 else "")
    pruning = dict(scope=compression.scope, rounds=compression.rounds, epochs=compression.finetune_epochs,
                   learning_rate=compression.finetune_learning_rate, **common)
    pruned = [PrunedModel(sparsity=0.0, structured=False, params=dense.params, mask=None)]
    pruned += prune_and_finetune(net, dense.params, data, sparsities=sparsities, key=prune_key, **pruning)
    pruned += prune_and_finetune(net, dense.params, data, sparsities=structured, structured=True,
                                 key=jax.random.fold_in(prune_key, 1), **pruning)

    calibration = data.x_train[: compression.calibration_size]
    models, levels, clips = [], [], []
    for index, level in enumerate(pruned):
        level_clips = np.stack([calibrate_clips(net, seed_slice(level.params, s), calibration)
                                for s in range(train.seeds)])
        for bits in weight_bits:
            if bits >= FLOAT_BITS:
                params = level.params
            else:
                params = quantize_level(net, level, level_clips, bits, data,
                                        epochs=compression.qat_epochs if bits <= 8 else 0,
                                        learning_rate=compression.finetune_learning_rate, batch_size=train.batch_size,
                                        key=jax.random.fold_in(quantize_key, index * 64 + bits),
                                        shift_px=train.shift_px)
            models.append(params)
            levels.append(Level(sparsity=level.sparsity, structured=level.structured, weight_bits=bits))
            clips.append(level_clips)
    clips = np.stack(clips).astype(np.float32)

    record = {
        "dense_train_seconds": dense.seconds,
        "compression_seconds": time.perf_counter() - start - dense.seconds,
        "dense_test_accuracy_per_epoch": dense.test_accuracy,
        "dense_test_accuracy_per_seed": dense.seed_accuracy,
        "measured_sparsity": [float(np.mean([kernel_sparsity(seed_slice(params, s)) for s in range(train.seeds)]))
                              for params in models],
    }
    tree = {"models": {str(i): params for i, params in enumerate(models)}, "clips": clips}
    meta = {"material": material, "record": record, "levels": [dataclasses.asdict(level) for level in levels]}
    entry = cache.save(cfg.cache_dir, key, tree, meta)
    log.info("cached trained and compressed parameters in %s (%.1f s of training)", entry,
             time.perf_counter() - start)
    return models, levels, clips, record, False, key


def evaluate_cached(cfg, net, models, clips, grid, data, models_key: str):
    """Test loss and accuracy [K, seeds] of every candidate, from the Orbax cache when this evaluation was done before.

    The entry is keyed by the models' cache key and the activation widths, so
    the jobs of a sweep over channel or policy settings evaluate once.
    """
    from jsplit import cache
    from jsplit.compress import evaluate_candidates

    key = cache.cache_key({"models": models_key, "activation_bits": sorted(int(b) for b in
                                                                            cfg.compression.activation_bits),
                           "evaluation": "test loss and accuracy per candidate and seed",
                           "grid": "integer levels send at their own width or narrower"})
    cached = cache.load(cfg.cache_dir, key)
    if cached is not None:
        tree, _ = cached
        log.info("loaded candidate evaluations from cache entry %s", cache.entry_path(cfg.cache_dir, key))
        return np.asarray(tree["loss"]), np.asarray(tree["accuracy"])
    start = time.perf_counter()
    loss, accuracy = evaluate_candidates(net, models, clips, grid, data.x_test, data.y_test, stacked=True)
    log.info("evaluated %d candidates on %d test images in %.1f s", len(grid), len(data.x_test),
             time.perf_counter() - start)
    cache.save(cfg.cache_dir, key, {"loss": loss, "accuracy": accuracy}, {"models_key": models_key})
    return loss, accuracy


def run(cfg: DictConfig, out_dir: Path) -> dict:
    """Run one job of the study and write its outputs to ``out_dir``; return the results dict."""
    import jax

    from jsplit import report
    from jsplit.channel import build_link
    from jsplit.compress import candidate_grid
    from jsplit.data import load_dataset
    from jsplit.model import build_network
    from jsplit.montecarlo import simulate
    from jsplit.profile import EnergyProfile, build_table, dense_macs, seed_std
    from jsplit.train import seed_slice
    from jsplit.select import (
        ADAPTIVE_POLICIES, STALE_CSI_POLICIES, adaptive_masks, budget_mask, fixed_policy_candidates, reference_accuracy,
    )

    timer = _Timer()
    with timer.stage("channel"):
        try:
            link = build_link(cfg, key=jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 1))
        except ValueError as error:  # a path outside the path-loss model's range, or a malformed trace
            raise ConfigError(str(error)) from None
    with timer.stage("data"):
        data = load_dataset(cfg.data.name, cfg.data.path, cfg.data.sha256, cfg.data.train_size, cfg.data.test_size)
    log.info("data: %s, %d training and %d test images, sha256 %s", data.name, len(data.x_train),
             len(data.x_test), data.sha256)

    net = build_network(cfg.model.name, tuple(cfg.model.features), data.input_size)
    if net.layers[-1].output_size < data.num_classes:
        raise ConfigError(f"invalid model.features={list(cfg.model.features)}: the last width must be at least "
                          f"the {data.num_classes} classes of {data.name}")
    with timer.stage("models"):
        models, levels, clips, record, cache_hit, models_key = prepare_models(cfg, net, data)

    with timer.stage("candidates"):
        grid = candidate_grid(levels, net.num_layers, cfg.compression.activation_bits)
        loss, accuracy = evaluate_cached(cfg, net, models, clips, grid, data, models_key)
        dense = int(np.flatnonzero((grid.model_index == 0) & (grid.split == 0))[0])  # the dense model, unchanged
        dense_loss, dense_accuracy = float(loss[dense].mean()), float(accuracy[dense].mean())

    with timer.stage("profile"):
        table = build_table(net, models, grid, loss, accuracy, EnergyProfile.from_config(cfg.energy), link.tx_power_w,
                            stacked=True)
        budget = budget_mask(table, cfg.policy.accuracy_margin_pp)
        adaptive_sets = adaptive_masks(table, budget)
    log.info("%d candidates, %d within %.2f points of the dense accuracy %.4f", len(table), int(budget.sum()),
             cfg.policy.accuracy_margin_pp, reference_accuracy(table))

    with timer.stage("monte_carlo"):
        adaptive_names = list(ADAPTIVE_POLICIES)
        allowed = np.stack([adaptive_sets[name] for name in adaptive_names])
        stats, envelopes = simulate(table, link, allowed, trajectories=cfg.mc.trajectories,
                                    realizations=cfg.mc.realizations, chunk_size=cfg.mc.chunk_size,
                                    memory_budget_bytes=cfg.mc.memory_budget_mb * 2**20, method=cfg.select.method,
                                    deadline_s=cfg.deadline_s, stale=[n in STALE_CSI_POLICIES for n in adaptive_names],
                                    key=jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 1))
    fixed = fixed_policy_candidates(table, budget, stats.energy.mean[: len(table)])
    streams = {name: len(table) + i for i, name in enumerate(adaptive_names)}
    streams.update({name: index for name, index in fixed.items()})
    reported_adaptive = [name for name in adaptive_names if name in cfg.policy.names]

    results = {
        "dataset": {"name": data.name, "train_size": len(data.x_train), "test_size": len(data.x_test),
                    "sha256": data.sha256, "source": data.source},
        "model": {"name": net.name, "test_accuracy": dense_accuracy, "test_loss": dense_loss,
                  "macs": dense_macs(net, seed_slice(models[0], 0)), "seeds": cfg.train.seeds,
                  "test_accuracy_std": float(seed_std(accuracy[dense])), "from_cache": cache_hit, "training": record},
        "compression": [describe_level(index, level, measured, table, accuracy, grid)
                        for index, (level, measured) in enumerate(zip(levels, record["measured_sparsity"]))],
        "config": OmegaConf.to_container(cfg, resolve=True),
        "monte_carlo": {"trajectories": cfg.mc.trajectories, "steps": cfg.mc.steps,
                        "realizations": cfg.mc.realizations, "samples": stats.samples, "seed": cfg.seed,
                        "chunk_size": stats.chunk_size, "devices": stats.devices, "selection": cfg.select.method,
                        "fading_correlation_mean": link.rho,
                        "mean_snr_db_min": float(link.mean_snr_db().min()),
                        "mean_snr_db_max": float(link.mean_snr_db().max())},
        "budget": {"reference_accuracy": reference_accuracy(table), "margin_pp": cfg.policy.accuracy_margin_pp,
                   "candidates": len(table), "candidates_in_budget": int(budget.sum())},
        "policies": {name: summarize_policy(name, streams[name], stats, table, cfg, adaptive_names)
                     for name in cfg.policy.names},
        "breakpoints": {name: describe_breakpoints(envelopes[adaptive_names.index(name)], table, link.bandwidth_hz)
                        for name in reported_adaptive},
    }

    report.write_run(out_dir, results, table, stats, link, streams, reported_adaptive, envelopes, timer.seconds)
    return results


def describe_level(index: int, level, measured_sparsity: float, table, accuracy, grid) -> dict:
    """Describe one compression level for ``results.json``: accuracy over seeds and the cost of running it all locally."""
    from jsplit.profile import seed_std

    own = int(np.flatnonzero((grid.model_index == index) & (grid.split == 0))[0])  # the model's own function
    local = int(np.flatnonzero((table.model_index == index) & (table.split == table.split.max()))[0])
    return {"level": level.label, "sparsity": level.sparsity, "structured": level.structured,
            "weight_bits": level.weight_bits, "measured_sparsity": measured_sparsity,
            "accuracy": float(accuracy[own].mean()), "accuracy_std": float(seed_std(accuracy[own])),
            "macs": float(table.macs[local]), "weight_bytes": float(table.weight_bytes[local]),
            "weights_in_sram": bool(table.weights_in_sram[local]),
            "energy_full_local_j": float(table.energy_local_j[local])}


def summarize_policy(name: str, stream: int, stats, table, cfg, adaptive_names) -> dict:
    """Turn one stream's statistics into its entry of ``results.json``."""
    from jsplit.montecarlo import QUANTILES

    samples = stats.samples
    mean = float(stats.energy.mean[stream])
    low, high = (float(v[stream]) for v in stats.ci95())
    joules_to_g_co2 = cfg.carbon.intensity_kg_per_kwh * 1000.0 / 3.6e6
    num_splits = int(table.split.max()) + 1

    if name in adaptive_names:
        counts = stats.split_count_per_step[adaptive_names.index(name)].sum(axis=0)
        split_share = {str(s): float(counts[s] / samples) for s in range(num_splits)}
        candidate = None
    else:
        split_share = {str(s): float(s == table.split[stream]) for s in range(num_splits)}
        candidate = {key: value for key, value in table.rows()[stream].items()}

    components = stats.variance_components()
    entry = {
        "energy_per_inference_j": {
            "mean": mean, "std": float(stats.energy.std[stream]), "ci95_low": low, "ci95_high": high,
            **{f"q{round(level * 100):02d}": float(stats.quantiles[i, stream]) for i, level in enumerate(QUANTILES)},
        },
        "co2_per_inference_g": mean * joules_to_g_co2,
        "accuracy": float(stats.accuracy[stream]),
        "loss": float(stats.loss[stream]),
        "split_share": split_share,
        "outage_share": float(stats.outage_share[stream]),
        # With a deadline, the transmission cap is what the deadline leaves after local computation, so a
        # missed cap is a missed deadline.
        "deadline_miss_share": float(stats.outage_share[stream]) if cfg.deadline_s is not None else 0.0,
        "run_mean_variance_j2": {part: float(values[stream]) for part, values in components.items()},
    }
    if candidate is not None:
        entry["candidate"] = candidate
    if name == "adaptive_outdated_csi":
        reference = float(stats.energy.mean[len(table)])  # the adaptive policy's stream
        entry["energy_gap_to_adaptive_j"] = mean - reference
        entry["energy_ratio_to_adaptive"] = mean / reference
    if not all(np.isfinite(v) for v in (mean, low, high, entry["accuracy"], entry["loss"])):
        raise FloatingPointError(f"policy {name} produced a non-finite statistic: {entry}")
    return entry


def describe_breakpoints(envelope, table, bandwidth_hz: float) -> list[dict]:
    """List the optimal candidate per SNR interval, from low to high SNR, for results.json."""
    # Segment i spans inverse rates (x[i-1], x[i]], that is rates from 1/x[i] up to 1/x[i-1]. An SNR too
    # large for float64 (a rate far beyond any link) is written as null, like the open ends.
    snr_db = envelope.snr_db(bandwidth_hz)
    rate = 1.0 / envelope.inv_rate
    segments = []
    for index in reversed(range(len(envelope.candidate))):
        k = int(envelope.candidate[index])
        low_snr, low_rate = (snr_db[index], rate[index]) if index < len(rate) else (-np.inf, 0.0)
        high_snr, high_rate = (snr_db[index - 1], rate[index - 1]) if index > 0 else (np.inf, np.inf)
        segments.append({
            "rate_bps_from": float(low_rate),
            "rate_bps_to": float(high_rate) if np.isfinite(high_rate) else None,
            "snr_db_from": float(low_snr) if np.isfinite(low_snr) else None,
            "snr_db_to": float(high_snr) if np.isfinite(high_snr) else None,
            "candidate": k, "sparsity": float(table.sparsity[k]), "structured": bool(table.structured[k]),
            "weight_bits": int(table.weight_bits[k]), "split": int(table.split[k]),
            "activation_bits": int(table.activation_bits[k]),
        })
    return segments


def _remove_empty_run_dir(out_dir: Path) -> None:
    """Delete a run directory that contains nothing but Hydra's records, so a rejected run leaves no files."""
    keep = [p for p in out_dir.iterdir() if p.name != ".hydra" and p.suffix != ".log"] if out_dir.exists() else []
    if out_dir.exists() and not keep:
        shutil.rmtree(out_dir, ignore_errors=True)
        parent = out_dir.parent
        if parent.exists() and [p.name for p in parent.iterdir()] in ([], ["multirun.yaml"]):
            shutil.rmtree(parent, ignore_errors=True)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    logging.getLogger("absl").setLevel(logging.WARNING)  # Orbax logs every checkpoint step at INFO
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # "no TPU found" on every CPU run
    try:
        validate(OmegaConf.to_container(cfg, resolve=True))
        from jsplit.data import DataError

        try:
            run(cfg, out_dir)
        except DataError as error:
            raise ConfigError(str(error)) from None
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        logging.shutdown()
        _remove_empty_run_dir(out_dir)
        sys.exit(2)


if __name__ == "__main__":
    main()
