import copy
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from jsplit.config import ConfigError, validate

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@pytest.fixture(scope="module")
def default_config():
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config")
    return OmegaConf.to_container(cfg, resolve=True)


def with_value(cfg, dotted, value):
    changed = copy.deepcopy(cfg)
    *parents, last = dotted.split(".")
    node = changed
    for key in parents:
        node = node[key]
    node[last] = value
    return changed


def test_defaults_are_valid(default_config):
    validate(default_config)


def test_defaults_follow_design(default_config):
    assert default_config["channel"]["tx_power_dbm"] == 23.0
    assert default_config["channel"]["carrier_hz"] == 2.4e9
    assert default_config["trajectory"]["speed_mps"] == 10.0
    assert default_config["mc"]["trajectories"] == 1000
    assert default_config["mc"]["steps"] == 1000
    assert default_config["energy"]["dram_read_32bit_pj"] == 640.0


@pytest.mark.parametrize("key, value, fragment", [
    ("bandwidth", 0, "bandwidth"),
    ("bandwidth", -1.0, "bandwidth"),
    ("bandwidth", "abc", "bandwidth"),
    ("bandwidth", True, "bandwidth"),
    ("mc.trajectories", 0, "mc.trajectories"),
    ("mc.trajectories", 2.5, "mc.trajectories"),
    ("mc.steps", -3, "mc.steps"),
    ("mc.chunk_size", "big", "mc.chunk_size"),
    ("seed", -1, "seed"),
    ("compression.sparsities", [0.5, 1.0], "compression.sparsities"),
    ("compression.sparsities", [-0.1], "compression.sparsities"),
    ("compression.activation_bits", [0], "compression.activation_bits"),
    ("compression.scope", "random", "compression.scope"),
    ("policy.names", ["adaptive", "oracle"], "policy.names"),
    ("policy.accuracy_margin_pp", -1, "policy.accuracy_margin_pp"),
    ("channel.fading", "nakagami", "channel.fading"),
    ("channel.carrier_hz", 0, "channel.carrier_hz"),
    ("trajectory.step_s", 0, "trajectory.step_s"),
    ("energy.dram_read_32bit_pj", "x", "energy.dram_read_32bit_pj"),
    ("data.sha256", "xyz", "data.sha256"),
    ("model.name", "vgg", "model.name"),
    ("train.learning_rate", 0, "train.learning_rate"),
    ("train.seeds", 0, "train.seeds"),
    ("train.shift_px", -1, "train.shift_px"),
    ("compression.weight_bits", [8, 4], "includes 32"),
    ("compression.weight_bits", [32, 6], "compression.weight_bits"),
    ("compression.structured_sparsities", [0.5, 1.0], "compression.structured_sparsities"),
    ("compression.rounds", 0, "compression.rounds"),
    ("compression.qat_epochs", -1, "compression.qat_epochs"),
    ("energy.int4_mult_pj", -0.1, "energy.int4_mult_pj"),
])
def test_invalid_value_names_key(default_config, key, value, fragment):
    with pytest.raises(ConfigError) as error:
        validate(with_value(default_config, key, value))

    message = str(error.value)
    offending = [v for v in value if repr(v) in message] if isinstance(value, list) else [value]
    assert fragment in message
    assert offending and repr(offending[0]) in message
    assert "\n" not in message


def test_unknown_key_rejected(default_config):
    with pytest.raises(ConfigError, match="mc.trajectorys"):
        validate(with_value(default_config, "mc.trajectorys", 10))


def run_cli(tmp_path, *overrides):
    env = {**os.environ, "JSPLIT_CACHE_DIR": str(tmp_path / "cache")}
    start = time.perf_counter()
    completed = subprocess.run([sys.executable, "-m", "jsplit.sweep", *overrides], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=60)
    return completed, time.perf_counter() - start


@pytest.mark.parametrize("override", ["bandwidth=-1", "bandwidth=abc", "mc.steps=0", "compression.sparsities=[0.5,1.5]",
                                      "policy.names=[adaptive,oracle]"])
def test_cli_rejects_bad_value_fast_without_files(tmp_path, override):
    completed, seconds = run_cli(tmp_path, override)
    key = override.split("=")[0]

    assert completed.returncode != 0
    assert seconds < 10
    assert key in completed.stderr
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("results.json"))
    assert not (tmp_path / "outputs").exists() or not any(p.is_file() for p in (tmp_path / "outputs").rglob("*"))


def test_cli_rejects_bad_value_in_multirun(tmp_path):
    completed, _ = run_cli(tmp_path, "-m", "bandwidth=-1,1e6")

    assert completed.returncode != 0
    assert "bandwidth" in completed.stderr
    assert not (tmp_path / "outputs").exists() or not any(p.is_file() for p in (tmp_path / "outputs").rglob("*"))


def test_cli_missing_data_path_explains(tmp_path):
    completed, _ = run_cli(tmp_path, f"data.path={tmp_path / 'nowhere'}")

    assert completed.returncode != 0
    assert "does not exist" in completed.stderr


def test_lenet5_needs_four_features(default_config):
    changed = with_value(with_value(default_config, "model.name", "lenet5"), "model.features", [20, 50, 10])

    with pytest.raises(ConfigError, match="model.features"):
        validate(changed)


def test_lenet5_brings_its_training_recipe():
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        lenet5 = compose(config_name="config", overrides=["model=lenet5"])
        chosen = compose(config_name="config", overrides=["model=lenet5", "train=default", "train.epochs=3"])
        default = compose(config_name="config")

    assert lenet5.compression.finetune_epochs != default.compression.finetune_epochs
    assert lenet5.train.epochs != default.train.epochs
    assert chosen.train.epochs == 3  # the command line wins
    assert chosen.train.shift_px == default.train.shift_px
    validate(OmegaConf.to_container(lenet5, resolve=True))
