"""Result files of one run and of a whole multirun: JSON, CSV and PNG plots.

Every file is written to a temporary name and renamed into place, and
``results.json`` is renamed last, so a run directory with ``results.json``
is complete and one without it contains no partial results.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from hydra.experimental.callback import Callback

from jsplit.select import ADAPTIVE_POLICIES

log = logging.getLogger(__name__)

COMPRESSION_CSV_COLUMNS = ("level", "sparsity", "structured", "weight_bits", "measured_sparsity", "accuracy",
                           "accuracy_std", "macs", "weight_bytes", "weights_in_sram", "energy_full_local_j")
POLICY_CSV_COLUMNS = ("policy", "energy_mean_j", "energy_std_j", "energy_ci95_low_j", "energy_ci95_high_j",
                      "co2_per_inference_g", "accuracy", "loss", "outage_share", "deadline_miss_share")


def _write_atomic(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def _csv_bytes(rows: list[dict], columns: list[str]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


def _png_bytes(figure) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _finite_json(value: Any) -> Any:
    """Return the results tree with numpy scalars converted; raise on NaN or infinity, which JSON cannot encode."""
    if isinstance(value, dict):
        return {key: _finite_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_json(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise FloatingPointError(f"non-finite value {value} in the results")
    if isinstance(value, np.generic):
        return _finite_json(value.item())
    return value


def policy_rows(results: dict) -> list[dict]:
    """Flatten each policy of ``results`` into one row, as in policies.csv."""
    rows = []
    for name, entry in results["policies"].items():
        energy = entry["energy_per_inference_j"]
        row = {"policy": name, "energy_mean_j": energy["mean"], "energy_std_j": energy["std"],
               "energy_ci95_low_j": energy["ci95_low"], "energy_ci95_high_j": energy["ci95_high"],
               "co2_per_inference_g": entry["co2_per_inference_g"], "accuracy": entry["accuracy"],
               "loss": entry["loss"], "outage_share": entry["outage_share"],
               "deadline_miss_share": entry["deadline_miss_share"]}
        row.update({f"split_{split}_share": share for split, share in entry["split_share"].items()})
        rows.append(row)
    return rows


def write_run(out_dir: Path, results: dict, table, stats, link, streams: dict[str, int], adaptive_names: list[str],
              envelopes, timing_s: dict[str, float]) -> None:
    """Write results.json, candidates.csv, policies.csv, compression.csv and the plots of one run into ``out_dir``.

    ``timing_s`` contains the seconds of the earlier stages; the time spent here
    is added as ``outputs`` before results.json is written.
    """
    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)

    candidate_rows = table.rows()
    _write_atomic(out_dir / "candidates.csv", _csv_bytes(candidate_rows, list(candidate_rows[0])))
    _write_atomic(out_dir / "compression.csv", _csv_bytes(results["compression"], list(COMPRESSION_CSV_COLUMNS)))
    rows = policy_rows(results)
    _write_atomic(out_dir / "policies.csv", _csv_bytes(rows, list(POLICY_CSV_COLUMNS) + sorted(
        {key for row in rows for key in row if key.startswith("split_")})))

    _write_atomic(out_dir / "energy_over_trajectory.png", _png_bytes(plot_energy_over_trajectory(results, stats, link, streams)))
    if adaptive_names:
        _write_atomic(out_dir / "adaptive_split_share.png",
                      _png_bytes(plot_split_share(stats, link, adaptive_names)))
        _write_atomic(out_dir / "breakpoints.png",
                      _png_bytes(plot_breakpoints(results, table, envelopes, link, adaptive_names)))
    _write_atomic(out_dir / "policy_energy_co2.png", _png_bytes(plot_policy_bars(results)))
    _write_atomic(out_dir / "compression.png", _png_bytes(plot_compression(results)))

    results = dict(results, timing_s={**timing_s, "outputs": time.perf_counter() - start})
    _write_atomic(out_dir / "results.json", json.dumps(_finite_json(results), indent=2).encode())
    log.info("wrote results to %s", out_dir)


def plot_compression(results: dict):
    """Test accuracy of every compression level against the device energy of running it all locally."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = results["compression"]
    precisions = sorted({level["weight_bits"] for level in levels}, reverse=True)
    colors = dict(zip(precisions, plt.get_cmap("viridis")(np.linspace(0.0, 0.85, len(precisions)))))
    figure, axis = plt.subplots(figsize=(8, 5))
    # The dense levels count as unstructured, with sparsity 0.
    for structured, marker, kind in ((False, "o", "unstructured"), (True, "s", "structured")):
        for bits in precisions:
            chosen = [level for level in levels if level["structured"] == structured and level["weight_bits"] == bits]
            if not chosen:
                continue
            label = f"{kind}, {'float32' if bits >= 32 else f'int{bits}'}"
            axis.errorbar([level["energy_full_local_j"] for level in chosen],
                          [100 * level["accuracy"] for level in chosen],
                          yerr=[100 * level["accuracy_std"] for level in chosen], fmt=marker, color=colors[bits],
                          label=label, capsize=3)
    dense = levels[0]
    axis.axhline(100 * dense["accuracy"], color="grey", linewidth=0.8, linestyle="--", label="dense float32")
    axis.set_xscale("log")
    axis.set_xlabel("device energy of a fully local inference [J]")
    axis.set_ylabel("test accuracy [%]")
    seeds = results["model"].get("seeds", 1)
    axis.set_title(f"{results['model']['name']} on {results['dataset']['name']}: compression levels"
                   + (f" (mean and std over {seeds} seeds)" if seeds > 1 else ""))
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8, ncols=2)
    return figure


def plot_energy_over_trajectory(results: dict, stats, link, streams: dict[str, int]):
    """Mean SNR along the path (top) and each policy's mean energy per step with a 95% band (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    time_s = np.arange(len(link.path_gain)) * link.step_s
    figure, (snr_axis, energy_axis) = plt.subplots(2, 1, figsize=(9, 7), sharex=True,
                                                   gridspec_kw={"height_ratios": [1, 3]})
    snr_axis.plot(time_s, link.mean_snr_db(), color="black")
    snr_axis.set_ylabel("mean SNR [dB]")
    snr_axis.set_title(f"B = {link.bandwidth_hz:g} Hz, {results['monte_carlo']['trajectories']} trajectories")
    snr_axis.grid(alpha=0.3)

    per_step = stats.energy_per_step
    low, high = per_step.ci95()
    plotted = [streams[name] for name in results["policies"]]
    # A rare outage makes the normal band reach below zero, so the log axis starts at half the smallest mean.
    floor = 0.5 * float(per_step.mean[:, plotted].min())
    for name in results["policies"]:
        stream = streams[name]
        line, = energy_axis.plot(time_s, per_step.mean[:, stream], label=name, linewidth=1.2)
        energy_axis.fill_between(time_s, np.maximum(low[:, stream], floor), high[:, stream], color=line.get_color(),
                                 alpha=0.2, linewidth=0)
    energy_axis.set_yscale("log")
    energy_axis.set_ylim(bottom=floor)
    energy_axis.set_xlabel("time [s]")
    energy_axis.set_ylabel("energy per inference [J]")
    energy_axis.grid(alpha=0.3, which="both")
    energy_axis.legend(fontsize=8, ncol=2)
    return figure


def plot_split_share(stats, link, adaptive_names: list[str]):
    """Share of trajectories choosing each split at each step, one panel per adaptive policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    time_s = np.arange(len(link.path_gain)) * link.step_s
    figure, axes = plt.subplots(len(adaptive_names), 1, figsize=(9, 3.2 * len(adaptive_names)), sharex=True,
                                squeeze=False)
    for axis, name in zip(axes[:, 0], adaptive_names):
        counts = stats.split_count_per_step[ADAPTIVE_POLICIES.index(name)]
        shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)  # [T, L+1]
        axis.stackplot(time_s, shares.T, labels=[f"split {s}" for s in range(shares.shape[1])])
        axis.set_ylim(0, 1)
        axis.set_ylabel("share of trajectories")
        axis.set_title(name)
        axis.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("time [s]")
    return figure


def plot_breakpoints(results: dict, table, envelopes, link, adaptive_names: list[str]):
    """Split chosen by each adaptive policy as a function of the SNR, with the SNR range of the run shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    snr_db = np.linspace(-20.0, 70.0, 2000)
    inv_rate = 1.0 / (link.bandwidth_hz * np.log2(1.0 + 10.0 ** (snr_db / 10.0)))
    figure, axes = plt.subplots(len(adaptive_names), 1, figsize=(9, 2.8 * len(adaptive_names)), sharex=True,
                                squeeze=False)
    mean_snr = link.mean_snr_db()
    for axis, name in zip(axes[:, 0], adaptive_names):
        envelope = envelopes[ADAPTIVE_POLICIES.index(name)]
        chosen = envelope.candidate[np.searchsorted(envelope.inv_rate, inv_rate, side="left")]
        axis.axvspan(mean_snr.min(), mean_snr.max(), color="0.9", label="mean SNR along the path")
        axis.step(snr_db, table.split[chosen], where="mid", color="tab:blue", label="split")
        sparsity = table.sparsity[chosen]
        points = axis.scatter(snr_db[::40], table.split[chosen][::40], c=sparsity[::40], cmap="viridis", vmin=0,
                              vmax=1, s=14, zorder=3, label="chosen model")
        figure.colorbar(points, ax=axis, label="sparsity", pad=0.01)
        axis.set_yticks(range(int(table.split.max()) + 1))
        axis.set_ylabel("split layer")
        axis.set_title(f"{name}: optimal split against SNR (B = {link.bandwidth_hz:g} Hz)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="center right")
    axes[-1, 0].set_xlabel("instantaneous SNR [dB]")
    return figure


def plot_policy_bars(results: dict):
    """Mean energy per inference (with its 95% interval) and CO2 per inference of every policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["policies"])
    energy = np.asarray([results["policies"][n]["energy_per_inference_j"]["mean"] for n in names])
    low = np.asarray([results["policies"][n]["energy_per_inference_j"]["ci95_low"] for n in names])
    high = np.asarray([results["policies"][n]["energy_per_inference_j"]["ci95_high"] for n in names])
    co2 = np.asarray([results["policies"][n]["co2_per_inference_g"] for n in names])

    figure, (energy_axis, co2_axis) = plt.subplots(1, 2, figsize=(11, 4.5))
    positions = np.arange(len(names))
    energy_axis.bar(positions, energy, yerr=[energy - low, high - energy], capsize=3, color="tab:blue")
    energy_axis.set_yscale("log")
    energy_axis.set_ylabel("energy per inference [J]")
    co2_axis.bar(positions, co2, color="tab:green")
    co2_axis.set_yscale("log")
    co2_axis.set_ylabel("CO2 per inference [g]")
    for axis in (energy_axis, co2_axis):
        axis.set_xticks(positions, names, rotation=35, ha="right", fontsize=8)
        axis.grid(alpha=0.3, axis="y", which="both")
    figure.suptitle(f"B = {results['config']['bandwidth']:g} Hz")
    return figure


def _swept_values(job_dir: Path) -> dict[str, Any]:
    """Parse the command-line overrides of one job into values (``bandwidth=1e5`` -> 100000.0)."""
    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    values = {}
    if overrides_file.is_file():
        for override in yaml.safe_load(overrides_file.read_text()) or []:
            key, _, text = str(override).lstrip("+~").partition("=")
            values[key] = yaml.safe_load(text) if text else None
    return values


def summarize_sweep(sweep_dir: Path) -> list[dict]:
    """Collect every finished job of a sweep into rows (job x policy) and write summary.csv and summary.png."""
    rows, swept_keys = [], []
    job_dirs = sorted((p for p in sweep_dir.iterdir() if (p / "results.json").is_file()),
                      key=lambda p: (len(p.name), p.name))
    for job_dir in job_dirs:
        results = json.loads((job_dir / "results.json").read_text())
        swept = _swept_values(job_dir)
        swept_keys.extend(key for key in swept if key not in swept_keys)
        for row in policy_rows(results):
            rows.append({"job": job_dir.name, **swept, **row})
    if not rows:
        log.warning("no finished job with results.json under %s; no summary written", sweep_dir)
        return rows

    columns = ["job", *swept_keys] + [key for key in rows[0] if key not in ("job", *swept_keys)]
    columns += sorted({key for row in rows for key in row} - set(columns))
    _write_atomic(sweep_dir / "summary.csv", _csv_bytes(rows, columns))
    _write_atomic(sweep_dir / "summary.png", _png_bytes(plot_summary(rows, swept_keys)))
    log.info("wrote summary.csv and summary.png for %d jobs to %s", len(job_dirs), sweep_dir)
    return rows


def plot_summary(rows: list[dict], swept_keys: list[str]):
    """Energy per inference of each policy against a swept value (bandwidth when swept), log axes.

    The first numeric swept key is the x axis; every combination of the other
    swept keys gets its own panel (at most 12).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numeric = [k for k in swept_keys if all(isinstance(r.get(k), (int, float)) and r.get(k) > 0 for r in rows)]
    x_key = "job"
    if numeric:
        x_key = "bandwidth" if "bandwidth" in numeric else numeric[0]
    # Overrides with one value in every job (mc.steps=100 on the command line) are not swept.
    others = [k for k in swept_keys if k != x_key and len({str(row.get(k)) for row in rows}) > 1]
    groups = list(dict.fromkeys(tuple(row.get(k) for k in others) for row in rows))[:12]
    columns = min(3, len(groups))
    figure, axes = plt.subplots(-(-len(groups) // columns), columns, figsize=(6.5 * columns, 4.5 * -(-len(groups) // columns)),
                                squeeze=False, sharey=True)
    markers = "os^vDPX*"
    for axis, group in zip(axes.flat, groups):
        subset = [row for row in rows if tuple(row.get(k) for k in others) == group]
        for index, policy in enumerate(dict.fromkeys(row["policy"] for row in subset)):
            points = sorted((row[x_key], row["energy_mean_j"], row["energy_ci95_low_j"], row["energy_ci95_high_j"])
                            for row in subset if row["policy"] == policy)
            x, mean, low, high = (np.asarray(v) for v in zip(*points))
            # Policies that pick the same candidate overlap; distinct markers and dashes keep each visible.
            line, = axis.plot(x, mean, marker=markers[index % len(markers)], markersize=9 - index,
                              linestyle="-" if policy.startswith("adaptive") else "--", label=policy)
            axis.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        if x_key in numeric:
            axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("bandwidth [Hz]" if x_key == "bandwidth" else x_key)
        axis.set_ylabel("energy per inference [J]")
        axis.grid(alpha=0.3, which="both")
        if others:
            axis.set_title(", ".join(f"{key}={value}" for key, value in zip(others, group)), fontsize=9)
    for axis in list(axes.flat)[len(groups):]:
        axis.set_visible(False)
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return figure


class SummaryCallback(Callback):
    """Hydra callback that writes summary.csv and summary.png at the sweep root after a multirun."""

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            log.warning("sweep directory %s not found; no summary written", sweep_dir)
            return
        summarize_sweep(sweep_dir)
