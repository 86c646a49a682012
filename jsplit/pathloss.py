"""Path-loss models: free space, log-distance and the 3GPP UMi-Street Canyon and UMa models.

Every model is a pure function of ``jax.numpy`` operations, so it accepts NumPy
or JAX arrays (or Python scalars), broadcasts its arguments, runs inside
``jax.jit`` and returns a JAX array in the default float dtype (float32 unless
``jax_enable_x64`` is set). Distances and heights are in metres, carrier
frequencies in hertz and losses in dB.

The UMi and UMa models and the LOS probabilities follow 3GPP TR 38.901 V17.0.0,
Table 7.4.1-1 (path loss) and Table 7.4.2-1 (LOS probability). Inside those
formulas fc is the carrier in GHz, while the breakpoint distance uses fc in Hz.
The formulas are evaluated at any input, so call ``check_validity`` on the host
before a simulation to reject distances, heights or carriers outside the ranges
for which the standard defines them.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax.scipy.special import logsumexp

SPEED_OF_LIGHT = 299_792_458.0  # m/s

# Effective environment height h_E of the breakpoint distance, in metres.
# NOTE: TR 38.901 draws h_E for UMa at random when h_UT > 13 m, but this module always uses 1 m.
EFFECTIVE_ENVIRONMENT_HEIGHT_M = 1.0

LOS_ALWAYS_WITHIN_M = 18.0  # Table 7.4.2-1: LOS probability is 1 up to this 2D distance

_GHZ = 1e9


def _as_float(x):
    return jnp.asarray(x, dtype=jnp.result_type(float))


def free_space_db(distance_m, carrier_hz):
    """Compute the Friis free-space path loss ``20 log10(4 pi d f / c)`` in dB.

    ``d`` is the distance in metres, ``f`` the carrier in hertz and
    ``c = 299792458 m/s``. The formula is valid in the far field, for d much
    larger than the wavelength, and returns -inf at d = 0.
    """
    distance = _as_float(distance_m)
    return 20.0 * jnp.log10(4.0 * math.pi * distance * _as_float(carrier_hz) / SPEED_OF_LIGHT)


def log_distance_db(distance_m, carrier_hz, exponent, reference_m):
    """Compute the log-distance path loss ``FSPL(d0) + 10 n log10(d / d0)`` in dB.

    ``FSPL(d0)`` is ``free_space_db`` at the reference distance d0
    (``reference_m``, metres) and n is the path-loss ``exponent``. Distances
    below d0 are clamped to d0, so the loss never falls below ``FSPL(d0)``.
    """
    reference = _as_float(reference_m)
    distance = jnp.maximum(_as_float(distance_m), reference)
    return free_space_db(reference, carrier_hz) + 10.0 * _as_float(exponent) * jnp.log10(distance / reference)


def _distance_3d(d2d, h_bs, h_ut):
    return jnp.sqrt(d2d**2 + (h_bs - h_ut) ** 2)


def _breakpoint_m(carrier_hz, h_bs, h_ut):
    """Breakpoint distance ``d'_BP = 4 h'_BS h'_UT fc / c`` in metres, with fc in Hz and ``h' = h - h_E``."""
    h_bs_effective = h_bs - EFFECTIVE_ENVIRONMENT_HEIGHT_M
    h_ut_effective = h_ut - EFFECTIVE_ENVIRONMENT_HEIGHT_M
    return 4.0 * h_bs_effective * h_ut_effective * carrier_hz / SPEED_OF_LIGHT


def _two_slope_los_db(d2d_m, carrier_hz, h_bs_m, h_ut_m, intercept_db, near_slope, breakpoint_weight):
    """Evaluate the two-slope LOS loss that UMi and UMa share, differing only in their constants.

    PL1 = intercept + near_slope log10(d3D) + 20 log10(fc) applies for d2D <= d'_BP and
    PL2 = intercept + 40 log10(d3D) + 20 log10(fc) - breakpoint_weight log10(d'_BP^2 + (h_BS - h_UT)^2)
    beyond it, with fc in GHz.
    """
    d2d = _as_float(d2d_m)
    carrier = _as_float(carrier_hz)
    h_bs = _as_float(h_bs_m)
    h_ut = _as_float(h_ut_m)

    d3d = _distance_3d(d2d, h_bs, h_ut)
    breakpoint_m = _breakpoint_m(carrier, h_bs, h_ut)
    carrier_term = 20.0 * jnp.log10(carrier / _GHZ)

    near_db = intercept_db + near_slope * jnp.log10(d3d) + carrier_term
    far_db = (
        intercept_db
        + 40.0 * jnp.log10(d3d)
        + carrier_term
        - breakpoint_weight * jnp.log10(breakpoint_m**2 + (h_bs - h_ut) ** 2)
    )
    return jnp.where(d2d <= breakpoint_m, near_db, far_db)


def umi_street_canyon_los_db(d2d_m, carrier_hz, h_bs_m, h_ut_m):
    """Compute the UMi-Street Canyon LOS path loss in dB (3GPP TR 38.901 V17.0.0, Table 7.4.1-1).

    With fc in GHz, d3D = sqrt(d2D^2 + (h_BS - h_UT)^2) and the breakpoint
    d'_BP = 4 (h_BS - 1) (h_UT - 1) fc_Hz / c:

        PL1 = 32.4 + 21 log10(d3D) + 20 log10(fc)                                        for 10 m <= d2D <= d'_BP
        PL2 = 32.4 + 40 log10(d3D) + 20 log10(fc) - 9.5 log10(d'_BP^2 + (h_BS - h_UT)^2)  for d'_BP < d2D <= 5 km

    The standard defines it for 1.5 m <= h_UT <= 22.5 m, h_BS = 10 m and
    0.5 GHz <= fc <= 100 GHz. The two pieces need not meet at d'_BP.
    """
    return _two_slope_los_db(d2d_m, carrier_hz, h_bs_m, h_ut_m, intercept_db=32.4, near_slope=21.0,
                             breakpoint_weight=9.5)


def umi_street_canyon_nlos_db(d2d_m, carrier_hz, h_bs_m, h_ut_m):
    """Compute the UMi-Street Canyon NLOS path loss in dB (3GPP TR 38.901 V17.0.0, Table 7.4.1-1).

    PL = max(PL_UMi-LOS, PL') with fc in GHz and

        PL' = 35.3 log10(d3D) + 22.4 + 21.3 log10(fc) - 0.3 (h_UT - 1.5)

    for 10 m <= d2D <= 5 km, 1.5 m <= h_UT <= 22.5 m, h_BS = 10 m and
    0.5 GHz <= fc <= 100 GHz.
    """
    d2d = _as_float(d2d_m)
    h_ut = _as_float(h_ut_m)
    d3d = _distance_3d(d2d, _as_float(h_bs_m), h_ut)

    nlos_db = 35.3 * jnp.log10(d3d) + 22.4 + 21.3 * jnp.log10(_as_float(carrier_hz) / _GHZ) - 0.3 * (h_ut - 1.5)
    return jnp.maximum(umi_street_canyon_los_db(d2d, carrier_hz, h_bs_m, h_ut), nlos_db)


def uma_los_db(d2d_m, carrier_hz, h_bs_m, h_ut_m):
    """Compute the UMa LOS path loss in dB (3GPP TR 38.901 V17.0.0, Table 7.4.1-1).

    With fc in GHz, d3D = sqrt(d2D^2 + (h_BS - h_UT)^2) and the breakpoint
    d'_BP = 4 (h_BS - h_E) (h_UT - h_E) fc_Hz / c with h_E = 1 m:

        PL1 = 28.0 + 22 log10(d3D) + 20 log10(fc)                                      for 10 m <= d2D <= d'_BP
        PL2 = 28.0 + 40 log10(d3D) + 20 log10(fc) - 9 log10(d'_BP^2 + (h_BS - h_UT)^2)  for d'_BP < d2D <= 5 km

    The standard defines it for 1.5 m <= h_UT <= 22.5 m, h_BS = 25 m and
    0.5 GHz <= fc <= 100 GHz. For h_UT > 13 m the standard draws h_E at random
    and this function keeps h_E = 1 m, see ``EFFECTIVE_ENVIRONMENT_HEIGHT_M``.
    """
    return _two_slope_los_db(d2d_m, carrier_hz, h_bs_m, h_ut_m, intercept_db=28.0, near_slope=22.0,
                             breakpoint_weight=9.0)


def uma_nlos_db(d2d_m, carrier_hz, h_bs_m, h_ut_m):
    """Compute the UMa NLOS path loss in dB (3GPP TR 38.901 V17.0.0, Table 7.4.1-1).

    PL = max(PL_UMa-LOS, PL') with fc in GHz and

        PL' = 13.54 + 39.08 log10(d3D) + 20 log10(fc) - 0.6 (h_UT - 1.5)

    for 10 m <= d2D <= 5 km, 1.5 m <= h_UT <= 22.5 m, h_BS = 25 m and
    0.5 GHz <= fc <= 100 GHz.
    """
    d2d = _as_float(d2d_m)
    h_ut = _as_float(h_ut_m)
    d3d = _distance_3d(d2d, _as_float(h_bs_m), h_ut)

    nlos_db = 13.54 + 39.08 * jnp.log10(d3d) + 20.0 * jnp.log10(_as_float(carrier_hz) / _GHZ) - 0.6 * (h_ut - 1.5)
    return jnp.maximum(uma_los_db(d2d, carrier_hz, h_bs_m, h_ut), nlos_db)


def umi_los_probability(d2d_m):
    """Compute the UMi-Street Canyon LOS probability (3GPP TR 38.901 V17.0.0, Table 7.4.2-1).

    P = 1 for d2D <= 18 m, else 18/d2D + exp(-d2D/36) (1 - 18/d2D), with d2D in
    metres. The standard derives it for outdoor UTs and h_BS = 10 m.
    """
    # The formula equals 1 at 18 m, so evaluating it at max(d2D, 18 m) covers both cases
    # and keeps 18 / d2D finite at d2D = 0.
    d2d = jnp.maximum(_as_float(d2d_m), LOS_ALWAYS_WITHIN_M)
    return LOS_ALWAYS_WITHIN_M / d2d + jnp.exp(-d2d / 36.0) * (1.0 - LOS_ALWAYS_WITHIN_M / d2d)


def uma_los_probability(d2d_m, h_ut_m):
    """Compute the UMa LOS probability (3GPP TR 38.901 V17.0.0, Table 7.4.2-1).

    P = 1 for d2D <= 18 m, else

        [18/d2D + exp(-d2D/63) (1 - 18/d2D)] (1 + C'(h_UT) 5/4 (d2D/100)^3 exp(-d2D/150))

    with C'(h_UT) = 0 for h_UT <= 13 m and ((h_UT - 13)/10)^1.5 for
    13 m < h_UT <= 23 m. Distances and heights are in metres.
    """
    d2d_input = _as_float(d2d_m)
    d2d = jnp.maximum(d2d_input, LOS_ALWAYS_WITHIN_M)
    height_factor = (jnp.maximum(_as_float(h_ut_m) - 13.0, 0.0) / 10.0) ** 1.5

    base = LOS_ALWAYS_WITHIN_M / d2d + jnp.exp(-d2d / 63.0) * (1.0 - LOS_ALWAYS_WITHIN_M / d2d)
    height_term = 1.0 + height_factor * 1.25 * (d2d / 100.0) ** 3 * jnp.exp(-d2d / 150.0)
    # NOTE: for h_UT > 13 m the product exceeds 1 for d2D between 18 m and about 18.5 m
    # (by up to 0.65 % at h_UT = 23 m), so it is clipped to 1 to stay a probability.
    probability = jnp.minimum(base * height_term, 1.0)
    return jnp.where(d2d_input <= LOS_ALWAYS_WITHIN_M, 1.0, probability)


def mixed_db(los_db, nlos_db, los_probability, u):
    """Select the LOS loss where ``u < los_probability`` and the NLOS loss elsewhere.

    ``u`` is a uniform draw in [0, 1) per position, so each position is LOS
    with probability ``los_probability``. Losses are in dB.
    """
    return jnp.where(_as_float(u) < _as_float(los_probability), _as_float(los_db), _as_float(nlos_db))


def expected_gain_db(los_db, nlos_db, p):
    """Compute the loss in dB of the mean linear gain over the LOS state.

    Returns ``-10 log10(p 10^(-los/10) + (1 - p) 10^(-nlos/10))``, where p is
    the LOS probability. The result lies between the two losses. The sum is
    taken in the log domain, so losses of several hundred dB do not underflow.
    """
    probability = _as_float(p)
    scale = math.log(10.0) / 10.0
    log_gains, weights = jnp.broadcast_arrays(
        jnp.stack(jnp.broadcast_arrays(-scale * _as_float(los_db), -scale * _as_float(nlos_db)), axis=-1),
        jnp.stack(jnp.broadcast_arrays(probability, 1.0 - probability), axis=-1),
    )
    return -logsumexp(log_gains, axis=-1, b=weights) / scale


MODELS = {
    "free_space": free_space_db,
    "log_distance": log_distance_db,
    "umi_los": umi_street_canyon_los_db,
    "umi_nlos": umi_street_canyon_nlos_db,
    "uma_los": uma_los_db,
    "uma_nlos": uma_nlos_db,
}

# Ranges (inclusive, in metres and hertz) in which TR 38.901 V17.0.0 Table 7.4.1-1 defines each model.
# The standard fixes h_BS at 10 m (UMi) and 25 m (UMa), stored as "h_bs_standard_m", but any positive
# h_BS is accepted. NOTE: h_BS or h_UT at or below h_E = 1 m makes d'_BP non-positive, so PL2 applies everywhere.
_UMI_VALIDITY = {
    "d2d_m": (10.0, 5000.0),
    "h_ut_m": (1.5, 22.5),
    "carrier_hz": (0.5e9, 100e9),
    "h_bs_standard_m": 10.0,
}
_UMA_VALIDITY = {
    "d2d_m": (10.0, 5000.0),
    "h_ut_m": (1.5, 22.5),
    "carrier_hz": (0.5e9, 100e9),
    "h_bs_standard_m": 25.0,
}
VALIDITY = {
    "umi_los": _UMI_VALIDITY,
    "umi_nlos": _UMI_VALIDITY,
    "uma_los": _UMA_VALIDITY,
    "uma_nlos": _UMA_VALIDITY,
}


def _within(value, bounds) -> bool:
    low, high = bounds
    return low <= value <= high  # False for NaN, so NaN is rejected


def check_validity(model: str, d2d_min_m: float, d2d_max_m: float, carrier_hz: float, h_bs_m: float,
                   h_ut_m: float) -> None:
    """Raise ValueError unless the inputs lie where ``model`` is defined.

    ``d2d_min_m`` and ``d2d_max_m`` bound the 2D distances the simulation will
    use. For the 3GPP models the distances, h_UT and the carrier must lie in
    ``VALIDITY[model]`` and h_BS must be positive. For free_space and
    log_distance only the distances are checked, and they must be positive.
    The message names the quantity, its value, the valid range and the model.
    Run it on the host before a simulation, since it compares Python floats.
    """
    if model not in MODELS:
        raise ValueError(f"unknown path-loss model {model!r}; expected one of {', '.join(MODELS)}")
    if d2d_min_m > d2d_max_m:
        raise ValueError(f"minimum 2D distance {d2d_min_m:g} m exceeds the maximum {d2d_max_m:g} m; swap them")

    if model not in VALIDITY:
        if not d2d_min_m > 0.0:
            raise ValueError(f"{model} path loss needs positive distances, got a minimum of {d2d_min_m:g} m; "
                             "place the device away from the base station")
        return

    ranges = VALIDITY[model]
    d2d_low, d2d_high = ranges["d2d_m"]
    if not _within(d2d_min_m, ranges["d2d_m"]):
        raise ValueError(f"{model} path loss is valid for 2D distances of {d2d_low:g} to {d2d_high:g} m, "
                         f"got a minimum of {d2d_min_m:g} m; keep the device farther from the base station "
                         "or choose log_distance")
    if not _within(d2d_max_m, ranges["d2d_m"]):
        raise ValueError(f"{model} path loss is valid for 2D distances of {d2d_low:g} to {d2d_high:g} m, "
                         f"got a maximum of {d2d_max_m:g} m; keep the device closer to the base station "
                         "or choose log_distance")

    h_ut_low, h_ut_high = ranges["h_ut_m"]
    if not _within(h_ut_m, ranges["h_ut_m"]):
        raise ValueError(f"{model} path loss is valid for UT heights of {h_ut_low:g} to {h_ut_high:g} m, "
                         f"got {h_ut_m:g} m; set the UT height inside that range")

    carrier_low, carrier_high = ranges["carrier_hz"]
    if not _within(carrier_hz, ranges["carrier_hz"]):
        raise ValueError(f"{model} path loss is valid for carrier frequencies of {carrier_low / _GHZ:g} to "
                         f"{carrier_high / _GHZ:g} GHz, got {carrier_hz / _GHZ:g} GHz; choose a carrier in "
                         "that range or choose free_space")

    if not h_bs_m > 0.0:
        raise ValueError(f"{model} path loss needs a positive BS height (the standard uses "
                         f"{ranges['h_bs_standard_m']:g} m), got {h_bs_m:g} m")
