"""The sweep entry point on a small slice of real MNIST, as a user runs it."""

import csv
import json
import math
import os
import subprocess
import sys

import pytest

POLICIES = {"adaptive", "adaptive_uncompressed", "static", "static_uncompressed", "full_offload", "full_local",
            "full_local_uncompressed", "adaptive_outdated_csi"}
SMALL = ["data.train_size=6000", "data.test_size=2000", "train.epochs=3", "train.seeds=2",
         "compression.finetune_epochs=1", "compression.sparsities=[0.5,0.9]", "compression.structured_sparsities=[0.5]",
         "compression.weight_bits=[32,8]", "compression.qat_epochs=1", "mc.trajectories=24", "mc.steps=100",
         "mc.chunk_size=10"]


def all_numbers(tree):
    if isinstance(tree, dict):
        for value in tree.values():
            yield from all_numbers(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from all_numbers(value)
    elif isinstance(tree, float):
        yield tree


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    env = {**os.environ, "JSPLIT_CACHE_DIR": str(root / "cache")}
    completed = subprocess.run([sys.executable, "-m", "jsplit.sweep", "-m", "bandwidth=1e5,1e7", *SMALL,
                                "hydra.sweep.dir=multirun"], cwd=root, env=env, capture_output=True, text=True,
                               timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return root / "multirun"


def test_each_job_writes_every_file(sweep):
    for job in ("0", "1"):
        for name in ("results.json", "candidates.csv", "policies.csv", "energy_over_trajectory.png",
                     "adaptive_split_share.png", "breakpoints.png", "policy_energy_co2.png"):
            assert (sweep / job / name).stat().st_size > 0, f"{job}/{name}"


def test_results_follow_output_contract(sweep):
    results = json.loads((sweep / "0" / "results.json").read_text())

    assert results["dataset"]["test_size"] == 2000
    assert len(results["dataset"]["sha256"]) == 64
    assert results["monte_carlo"]["samples"] == 24 * 100
    assert results["config"]["bandwidth"] == 1e5
    assert set(results["policies"]) == POLICIES
    for entry in results["policies"].values():
        energy = entry["energy_per_inference_j"]
        assert energy["ci95_low"] <= energy["mean"] <= energy["ci95_high"]
        assert entry["co2_per_inference_g"] > 0
        assert sum(entry["split_share"].values()) == pytest.approx(1.0)
        assert 0.0 <= entry["outage_share"] <= 1.0
    assert all(math.isfinite(x) for x in all_numbers(results))
    assert set(results["timing_s"]) >= {"data", "models", "candidates", "monte_carlo", "outputs"}


def test_candidates_cover_every_level_with_seed_statistics(sweep):
    results = json.loads((sweep / "0" / "results.json").read_text())
    with open(sweep / "0" / "candidates.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))

    assert results["model"]["seeds"] == 2
    levels = {(c["sparsity"], c["structured"], c["weight_bits"]) for c in results["compression"]}
    assert levels == {(s, structured, bits) for s, structured in ((0.0, False), (0.5, False), (0.9, False),
                                                                  (0.5, True)) for bits in (32, 8)}
    assert {(float(r["sparsity"]), r["structured"], int(r["weight_bits"])) for r in rows} == {
        (s, str(structured), bits) for s, structured, bits in levels}
    assert any(float(r["accuracy_std"]) > 0 for r in rows)  # two differently initialised models disagree
    # structured pruning halves the hidden activation that is sent
    sent = {(r["structured"], int(r["split"])): float(r["elements_sent"]) for r in rows if r["weight_bits"] == "32"
            and float(r["sparsity"]) == 0.5}
    assert sent[("True", 1)] == 150
    assert sent[("False", 1)] == 300


def test_adaptive_is_cheapest_in_every_job(sweep):
    for job in ("0", "1"):
        policies = json.loads((sweep / job / "results.json").read_text())["policies"]
        adaptive = policies["adaptive"]["energy_per_inference_j"]["mean"]
        for name, entry in policies.items():
            assert adaptive <= entry["energy_per_inference_j"]["mean"] * (1 + 1e-6), name


def test_second_job_reuses_cached_model(sweep):
    first = json.loads((sweep / "0" / "results.json").read_text())
    second = json.loads((sweep / "1" / "results.json").read_text())

    assert first["model"]["from_cache"] is False
    assert second["model"]["from_cache"] is True
    assert second["model"]["test_accuracy"] == first["model"]["test_accuracy"]
    assert "loaded candidate evaluations from cache entry" in (sweep / "1" / "sweep.log").read_text()


def test_candidates_csv_columns(sweep):
    with open(sweep / "0" / "candidates.csv") as stream:
        rows = list(csv.DictReader(stream))

    # 4 pruning levels (dense, 0.5, 0.9, structured 0.5) each have split 0 (raw image), 2 inner splits and
    # split 3 (label). At inner splits float32 models send at 3 activation widths, 8-bit models at 8 bits only.
    assert len(rows) == 4 * (1 + 2 * 3 + 1) + 4 * (1 + 2 * 1 + 1)
    for column in ("sparsity", "structured", "weight_bits", "split", "activation_bits", "macs", "bits_sent",
                   "energy_local_j", "loss", "accuracy", "accuracy_std"):
        assert column in rows[0]
    dense_local = [r for r in rows if r["model_index"] == "0" and r["split"] == "3"][0]
    assert float(dense_local["macs"]) == 266_200
    int8_local = [r for r in rows if r["sparsity"] == "0.0" and r["weight_bits"] == "8" and r["split"] == "3"][0]
    # 8-bit weights are a quarter of the DRAM words (267.8 kB still exceed the 256 KiB SRAM) at 15x cheaper MACs
    assert float(int8_local["energy_local_j"]) < float(dense_local["energy_local_j"]) / 3.5


def test_compression_table_and_plot(sweep):
    with open(sweep / "0" / "compression.csv") as stream:
        rows = list(csv.DictReader(stream))

    assert len(rows) == 8
    assert rows[0]["level"] == "dense / float32"
    assert all(0.5 < float(r["accuracy"]) <= 1.0 and float(r["energy_full_local_j"]) > 0 for r in rows)
    assert (sweep / "0" / "compression.png").stat().st_size > 0


def test_summary_has_row_per_job_and_policy(sweep):
    with open(sweep / "summary.csv") as stream:
        rows = list(csv.DictReader(stream))

    assert len(rows) == 2 * len(POLICIES)
    assert {float(r["bandwidth"]) for r in rows} == {1e5, 1e7}
    assert (sweep / "summary.png").stat().st_size > 0


def test_channel_deadline_and_csi_options_run(tmp_path):
    """The robustness options run end to end: 3GPP UMi NLOS, random waypoint, a deadline and stale CSI."""
    env = {**os.environ, "JSPLIT_CACHE_DIR": str(tmp_path / "cache")}
    completed = subprocess.run([sys.executable, "-m", "jsplit.sweep", "channel=umi_nlos", "trajectory=random_waypoint",
                                "deadline_s=0.05", "csi.delay_steps=2", *SMALL, "hydra.run.dir=run"], cwd=tmp_path,
                               env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    policies = json.loads((tmp_path / "run" / "results.json").read_text())["policies"]

    assert "deadline_miss_share" in policies["full_offload"]
    assert policies["adaptive_outdated_csi"]["energy_gap_to_adaptive_j"] >= -1e-12
    assert all(math.isfinite(x) for x in all_numbers(policies))


def test_malformed_trace_fails_with_line_number(tmp_path):
    trace = tmp_path / "trace.csv"
    trace.write_text("t,x,y\n0,0,50\n1,10,50\n1,20,50\n")
    completed = subprocess.run([sys.executable, "-m", "jsplit.sweep", "trajectory=trace", f"trajectory.path={trace}",
                                "hydra.run.dir=run"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                               env={**os.environ, "JSPLIT_CACHE_DIR": str(tmp_path / "cache")})

    assert completed.returncode == 2
    assert "line 4" in completed.stderr
    assert not (tmp_path / "run").exists()
