"""Validation of the composed Hydra configuration, run before any compute.

Every check raises ConfigError with one line that names the key, the value
and what is accepted. Unknown keys inside the known sections are rejected
too, so a typo cannot silently fall back to a default.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

POLICY_NAMES = (
    "adaptive",
    "adaptive_uncompressed",
    "adaptive_outdated_csi",
    "static",
    "static_uncompressed",
    "full_offload",
    "full_local",
    "full_local_uncompressed",
)
MODELS = ("lenet300100", "lenet5")
PRUNING_SCOPES = ("global", "layer")
FLOAT_BITS = 32  # a precision of 32 bits means float32
WEIGHT_BITS = (4, 8, 16, 32)  # weight precisions the energy profile has multiply energies for
PATH_LOSS_MODELS = ("free_space", "log_distance", "umi_los", "umi_nlos", "umi_mixed", "uma_los", "uma_nlos",
                    "uma_mixed")
FADING_MODELS = ("none", "rayleigh", "rician")
FADING_PROCESSES = ("gauss_markov", "sum_of_sinusoids", "block")
# Keys of each trajectory model besides name and step_s.
TRAJECTORY_KEYS = {
    "straight": ("speed_mps", "closest_m"),
    "polyline": ("speed_mps", "waypoints_m"),
    "circle": ("speed_mps", "center_m", "radius_m"),
    "random_waypoint": ("area_m", "speed_range_mps", "pause_s"),
    "trace": ("path",),
}
TRAJECTORIES = tuple(TRAJECTORY_KEYS)
SELECTION_METHODS = ("breakpoints", "argmin")


class ConfigError(ValueError):
    """An invalid configuration value; the message is one line naming the key."""


def _fail(key: str, value, accepted: str):
    raise ConfigError(f"invalid {key}={value!r}: expected {accepted}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(cfg: Mapping, section: str, key: str, *, minimum=None, exclusive: bool = False, accepted: str):
    full = f"{section}.{key}" if section else key
    value = cfg[key]
    if not _is_number(value):
        _fail(full, value, accepted)
    if minimum is not None and (value <= minimum if exclusive else value < minimum):
        _fail(full, value, accepted)
    return value


def _integer(cfg: Mapping, section: str, key: str, *, minimum: int, accepted: str, optional: bool = False):
    full = f"{section}.{key}" if section else key
    value = cfg[key]
    if optional and value is None:
        return value
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        _fail(full, value, accepted)
    return value


def _choice(cfg: Mapping, section: str, key: str, options: Sequence[str]):
    value = cfg[key]
    if value not in options:
        _fail(f"{section}.{key}", value, "one of " + ", ".join(options))
    return value


def _string(cfg: Mapping, section: str, key: str, *, optional: bool = False):
    value = cfg[key]
    if optional and value is None:
        return value
    if not isinstance(value, str) or not value:
        _fail(f"{section}.{key}", value, "a non-empty string" + (" or null" if optional else ""))
    return value


def _section(cfg: Mapping, name: str, keys: Sequence[str]) -> Mapping:
    """Return ``cfg[name]`` after checking it has exactly ``keys``."""
    section = cfg.get(name)
    if not isinstance(section, Mapping):
        _fail(name, section, f"a mapping with keys {', '.join(keys)}")
    unknown = sorted(set(section) - set(keys))
    if unknown:
        _fail(f"{name}.{unknown[0]}", section[unknown[0]], f"no such key; {name} accepts {', '.join(keys)}")
    missing = [key for key in keys if key not in section]
    if missing:
        _fail(f"{name}.{missing[0]}", None, "a value (the key is missing)")
    return section


def validate(cfg: Mapping) -> None:
    """Check a resolved configuration (a plain dict or a DictConfig); raise ConfigError on the first bad value."""
    top_keys = ("data", "model", "train", "compression", "energy", "channel", "trajectory", "policy",
                "bandwidth", "seed", "mc", "select", "deadline_s", "csi", "carbon", "cache_dir")
    unknown = sorted(key for key in cfg if key not in top_keys and key != "hydra")
    if unknown:
        _fail(unknown[0], cfg[unknown[0]], "no such key; the top level accepts " + ", ".join(top_keys))

    _number(cfg, "", "bandwidth", minimum=0, exclusive=True, accepted="a positive number of hertz, e.g. 1e6")
    _integer(cfg, "", "seed", minimum=0, accepted="a non-negative integer")
    _string(cfg, "", "cache_dir")

    mc = _section(cfg, "mc", ("trajectories", "realizations", "steps", "chunk_size", "memory_budget_mb"))
    for key in ("trajectories", "realizations", "steps"):
        _integer(mc, "mc", key, minimum=1, accepted="a positive integer")
    _integer(mc, "mc", "chunk_size", minimum=1, accepted="a positive integer or null", optional=True)
    _number(mc, "mc", "memory_budget_mb", minimum=0, exclusive=True, accepted="a positive number of MiB")
    select = _section(cfg, "select", ("method",))
    _choice(select, "select", "method", SELECTION_METHODS)
    if cfg.get("deadline_s") is not None:
        _number(cfg, "", "deadline_s", minimum=0, exclusive=True, accepted="a positive number of seconds or null")
    csi = _section(cfg, "csi", ("delay_steps", "error_db"))
    _integer(csi, "csi", "delay_steps", minimum=0, accepted="a non-negative number of steps")
    _number(csi, "csi", "error_db", minimum=0, accepted="a non-negative standard deviation in dB")

    data = _section(cfg, "data", ("name", "path", "sha256", "train_size", "test_size"))
    _string(data, "data", "name")
    _string(data, "data", "path", optional=True)
    if data["sha256"] is not None and not (isinstance(data["sha256"], str) and re.fullmatch(r"[0-9a-fA-F]{64}", data["sha256"])):
        _fail("data.sha256", data["sha256"], "64 hexadecimal digits or null")
    for key in ("train_size", "test_size"):
        _integer(data, "data", key, minimum=1, accepted="a positive integer or null", optional=True)

    model = _section(cfg, "model", ("name", "features"))
    _choice(model, "model", "name", MODELS)
    features = model["features"]
    if (not isinstance(features, Sequence) or isinstance(features, str) or len(features) < 2
            or not all(isinstance(f, int) and not isinstance(f, bool) and f > 0 for f in features)):
        _fail("model.features", features, "a list of at least two positive layer widths")
    if model["name"] == "lenet5" and len(features) != 4:
        _fail("model.features", features, "[conv1 channels, conv2 channels, hidden units, classes] for lenet5")

    train = _section(cfg, "train", ("epochs", "batch_size", "learning_rate", "seeds", "shift_px"))
    _integer(train, "train", "epochs", minimum=1, accepted="a positive integer")
    _integer(train, "train", "batch_size", minimum=1, accepted="a positive integer")
    _number(train, "train", "learning_rate", minimum=0, exclusive=True, accepted="a positive number")
    _integer(train, "train", "seeds", minimum=1, accepted="a positive number of seeds trained together")
    _integer(train, "train", "shift_px", minimum=0, accepted="a non-negative number of pixels (0: no augmentation)")

    _validate_compression(cfg)
    _validate_physics(cfg)

    policy = _section(cfg, "policy", ("names", "accuracy_margin_pp"))
    names = policy["names"]
    if not isinstance(names, Sequence) or isinstance(names, str) or not names:
        _fail("policy.names", names, "a non-empty list of " + ", ".join(POLICY_NAMES))
    for name in names:
        if name not in POLICY_NAMES:
            _fail("policy.names", name, "policy names from " + ", ".join(POLICY_NAMES))
    _number(policy, "policy", "accuracy_margin_pp", minimum=0, accepted="a non-negative number of percentage points")

    carbon = _section(cfg, "carbon", ("intensity_kg_per_kwh", "source"))
    _number(carbon, "carbon", "intensity_kg_per_kwh", minimum=0, accepted="a non-negative number of kg CO2 per kWh")
    _string(carbon, "carbon", "source")


def _validate_compression(cfg: Mapping) -> None:
    compression = _section(cfg, "compression", ("sparsities", "structured_sparsities", "scope", "rounds",
                                                "finetune_epochs", "finetune_learning_rate", "weight_bits",
                                                "qat_epochs", "activation_bits", "calibration_size"))
    for key in ("sparsities", "structured_sparsities"):
        sparsities = compression[key]
        if not isinstance(sparsities, Sequence) or isinstance(sparsities, str):
            _fail(f"compression.{key}", sparsities, "a list of sparsities in [0, 1)")
        for sparsity in sparsities:
            if not _is_number(sparsity) or not 0.0 <= sparsity < 1.0:
                _fail(f"compression.{key}", sparsity, "sparsities in [0, 1)")
    _choice(compression, "compression", "scope", PRUNING_SCOPES)
    _integer(compression, "compression", "rounds", minimum=1, accepted="a positive number of pruning rounds per level")
    _integer(compression, "compression", "finetune_epochs", minimum=1, accepted="a positive integer")
    _integer(compression, "compression", "qat_epochs", minimum=0,
             accepted="a non-negative integer (0: quantize after training)")
    weight_bits = compression["weight_bits"]
    if not isinstance(weight_bits, Sequence) or isinstance(weight_bits, str) or FLOAT_BITS not in weight_bits:
        _fail("compression.weight_bits", weight_bits,
              f"a list of weight precisions from {list(WEIGHT_BITS)} that includes 32 (the float32 reference)")
    for width in weight_bits:
        if width not in WEIGHT_BITS or isinstance(width, bool):
            _fail("compression.weight_bits", width, f"precisions from {list(WEIGHT_BITS)}, the widths the energy "
                  "profile has multiply energies for")
    _number(compression, "compression", "finetune_learning_rate", minimum=0, exclusive=True, accepted="a positive number")
    bits = compression["activation_bits"]
    if not isinstance(bits, Sequence) or isinstance(bits, str) or not bits:
        _fail("compression.activation_bits", bits, "a non-empty list of bit-widths in 1..32")
    for width in bits:
        if not isinstance(width, int) or isinstance(width, bool) or not 1 <= width <= 32:
            _fail("compression.activation_bits", width, "bit-widths in 1..32 (32 sends float32)")
    _integer(compression, "compression", "calibration_size", minimum=1, accepted="a positive integer")


def _validate_physics(cfg: Mapping) -> None:
    energy_keys = ("name", "source", "float32_add_pj", "float32_mult_pj", "int32_add_pj", "int32_mult_pj",
                   "int8_add_pj", "int8_mult_pj", "int16_mult_pj", "int4_mult_pj", "sram_read_32bit_pj", "dram_read_32bit_pj", "sram_bytes",
                   "macs_per_s")
    energy = _section(cfg, "energy", energy_keys)
    _string(energy, "energy", "name")
    _string(energy, "energy", "source")
    for key in energy_keys[2:-2]:
        _number(energy, "energy", key, minimum=0, accepted="a non-negative energy in picojoules")
    _number(energy, "energy", "sram_bytes", minimum=0, accepted="a non-negative number of bytes")
    _number(energy, "energy", "macs_per_s", minimum=0, exclusive=True, accepted="a positive number of MAC/s")

    channel = _section(cfg, "channel", (
        "name", "tx_power_dbm", "noise_density_dbm_per_hz", "noise_figure_db", "carrier_hz", "path_loss",
        "path_loss_exponent", "reference_m", "bs_height_m", "ut_height_m", "los_decorrelation_m", "shadowing_db",
        "shadowing_decorrelation_m", "fading", "fading_process", "rician_k_db", "sinusoids", "block_steps",
        "base_stations_m"))
    _string(channel, "channel", "name")
    for key in ("tx_power_dbm", "noise_density_dbm_per_hz", "rician_k_db"):
        _number(channel, "channel", key, accepted="a number in dB or dBm")
    for key in ("noise_figure_db", "shadowing_db"):
        _number(channel, "channel", key, minimum=0, accepted="a non-negative number of dB")
    _number(channel, "channel", "carrier_hz", minimum=0, exclusive=True, accepted="a positive frequency in Hz")
    _choice(channel, "channel", "path_loss", PATH_LOSS_MODELS)
    _number(channel, "channel", "path_loss_exponent", minimum=0, exclusive=True, accepted="a positive number")
    for key in ("reference_m", "bs_height_m", "ut_height_m", "los_decorrelation_m", "shadowing_decorrelation_m"):
        _number(channel, "channel", key, minimum=0, exclusive=True, accepted="a positive distance in metres")
    _choice(channel, "channel", "fading", FADING_MODELS)
    _choice(channel, "channel", "fading_process", FADING_PROCESSES)
    _integer(channel, "channel", "sinusoids", minimum=1, accepted="a positive integer")
    _integer(channel, "channel", "block_steps", minimum=1, accepted="a positive integer")
    _points(channel, "channel", "base_stations_m", minimum=1)

    _validate_trajectory(cfg)


def _points(cfg: Mapping, section: str, key: str, minimum: int):
    value = cfg[key]
    accepted = f"a list of at least {minimum} [x, y] points in metres"
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) < minimum:
        _fail(f"{section}.{key}", value, accepted)
    for point in value:
        if (not isinstance(point, Sequence) or isinstance(point, str) or len(point) != 2
                or not all(_is_number(v) for v in point)):
            _fail(f"{section}.{key}", point, accepted)


def _validate_trajectory(cfg: Mapping) -> None:
    trajectory = cfg.get("trajectory")
    name = trajectory.get("name") if isinstance(trajectory, Mapping) else None
    if name not in TRAJECTORY_KEYS:
        _fail("trajectory.name", name, "one of " + ", ".join(TRAJECTORIES))
    trajectory = _section(cfg, "trajectory", ("name", "step_s", *TRAJECTORY_KEYS[name]))
    _number(trajectory, "trajectory", "step_s", minimum=0, exclusive=True, accepted="a positive duration in seconds")
    if "speed_mps" in trajectory:
        _number(trajectory, "trajectory", "speed_mps", minimum=0, accepted="a non-negative speed in m/s")
    if name == "straight":
        _number(trajectory, "trajectory", "closest_m", minimum=0, exclusive=True, accepted="a positive distance in metres")
    elif name == "polyline":
        _points(trajectory, "trajectory", "waypoints_m", minimum=2)
    elif name == "circle":
        _points({"center_m": [trajectory["center_m"]]}, "trajectory", "center_m", minimum=1)
        _number(trajectory, "trajectory", "radius_m", minimum=0, exclusive=True, accepted="a positive radius in metres")
    elif name == "random_waypoint":
        area = trajectory["area_m"]
        if (not isinstance(area, Sequence) or len(area) != 4 or not all(_is_number(v) for v in area)
                or not (area[0] < area[1] and area[2] < area[3])):
            _fail("trajectory.area_m", area, "[x_min, x_max, y_min, y_max] in metres with min < max")
        speeds = trajectory["speed_range_mps"]
        if (not isinstance(speeds, Sequence) or len(speeds) != 2 or not all(_is_number(v) for v in speeds)
                or not 0 < speeds[0] <= speeds[1]):
            _fail("trajectory.speed_range_mps", speeds, "[v_min, v_max] in m/s with 0 < v_min <= v_max")
        _number(trajectory, "trajectory", "pause_s", minimum=0, accepted="a non-negative duration in seconds")
    elif trajectory["path"] in (None, "???"):
        raise ConfigError("missing trajectory.path: the trace trajectory needs a CSV file; "
                          "set trajectory.path=/path/to/trace.csv")
    elif not isinstance(trajectory["path"], str):
        _fail("trajectory.path", trajectory["path"], "the path of a CSV trace: set trajectory.path=/path/to/trace.csv")
