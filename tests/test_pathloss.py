"""Path-loss models against values computed by hand from 3GPP TR 38.901 V17.0.0, Tables 7.4.1-1 and 7.4.2-1."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsplit.pathloss import (
    MODELS, VALIDITY, check_validity, expected_gain_db, free_space_db, log_distance_db, mixed_db,
    uma_los_db, uma_los_probability, uma_nlos_db, umi_los_probability, umi_street_canyon_los_db,
    umi_street_canyon_nlos_db,
)

C = 299_792_458.0

# Results are float32 unless jax_enable_x64 is set, which leaves about 1e-5 dB of rounding on 100 dB.
DB_TOLERANCE = 1e-3


def as_float(x):
    return float(np.asarray(x))


# --- Free space and log-distance -----------------------------------------------------------------


def test_free_space_at_one_metre():
    # 20 log10(4 pi * 1 m * 2.4e9 Hz / c) = 20 log10(100.598) = 40.052 dB
    assert as_float(free_space_db(1.0, 2.4e9)) == pytest.approx(40.05, abs=0.01)


def test_free_space_doubles_distance_adds_6db():
    expected = 20.0 * math.log10(2.0)

    difference = as_float(free_space_db(200.0, 3.5e9) - free_space_db(100.0, 3.5e9))

    assert difference == pytest.approx(expected, abs=DB_TOLERANCE)


def test_log_distance_beyond_reference():
    reference_db = 20.0 * math.log10(4.0 * math.pi * 1.0 * 2.4e9 / C)
    expected = reference_db + 10.0 * 3.5 * math.log10(250.0 / 1.0)

    assert as_float(log_distance_db(250.0, 2.4e9, 3.5, 1.0)) == pytest.approx(expected, abs=DB_TOLERANCE)


def test_log_distance_clamps_below_reference():
    reference_db = 20.0 * math.log10(4.0 * math.pi * 10.0 * 2.4e9 / C)

    assert as_float(log_distance_db(2.0, 2.4e9, 3.0, 10.0)) == pytest.approx(reference_db, abs=DB_TOLERANCE)
    assert as_float(log_distance_db(0.0, 2.4e9, 3.0, 10.0)) == pytest.approx(reference_db, abs=DB_TOLERANCE)


# --- UMi-Street Canyon at fc = 3.5 GHz, h_BS = 10 m, h_UT = 1.5 m --------------------------------

UMI_FC = 3.5e9
UMI_H_BS = 10.0
UMI_H_UT = 1.5
# d'_BP = 4 (h_BS - 1) (h_UT - 1) fc / c = 4 * 9 * 0.5 * 3.5e9 / c = 210.14 m
UMI_BREAKPOINT = 4.0 * 9.0 * 0.5 * 3.5e9 / C


def umi_pl1(d2d, h_ut=UMI_H_UT):
    d3d = math.sqrt(d2d**2 + (UMI_H_BS - h_ut) ** 2)
    return 32.4 + 21.0 * math.log10(d3d) + 20.0 * math.log10(3.5)


def umi_pl2(d2d, h_ut=UMI_H_UT):
    d3d = math.sqrt(d2d**2 + (UMI_H_BS - h_ut) ** 2)
    breakpoint_m = 4.0 * (UMI_H_BS - 1.0) * (h_ut - 1.0) * UMI_FC / C
    return (32.4 + 40.0 * math.log10(d3d) + 20.0 * math.log10(3.5)
            - 9.5 * math.log10(breakpoint_m**2 + (UMI_H_BS - h_ut) ** 2))


def umi_nlos_prime(d2d, h_ut=UMI_H_UT):
    d3d = math.sqrt(d2d**2 + (UMI_H_BS - h_ut) ** 2)
    return 35.3 * math.log10(d3d) + 22.4 + 21.3 * math.log10(3.5) - 0.3 * (h_ut - 1.5)


def test_umi_breakpoint_by_hand():
    assert UMI_BREAKPOINT == pytest.approx(210.14, abs=0.01)


@pytest.mark.parametrize("d2d", [10.0, 100.0, UMI_BREAKPOINT - 1.0])
def test_umi_los_below_breakpoint_is_pl1(d2d):
    loss = as_float(umi_street_canyon_los_db(d2d, UMI_FC, UMI_H_BS, UMI_H_UT))

    assert loss == pytest.approx(umi_pl1(d2d), abs=DB_TOLERANCE)


@pytest.mark.parametrize("d2d", [UMI_BREAKPOINT + 1.0, 1000.0, 5000.0])
def test_umi_los_above_breakpoint_is_pl2(d2d):
    loss = as_float(umi_street_canyon_los_db(d2d, UMI_FC, UMI_H_BS, UMI_H_UT))

    assert loss == pytest.approx(umi_pl2(d2d), abs=DB_TOLERANCE)


def test_umi_los_at_100m_value():
    # d3D = sqrt(100^2 + 8.5^2) = 100.361 m, so PL1 = 32.4 + 21 * 2.00156 + 20 * 0.54407 = 85.314 dB
    loss = as_float(umi_street_canyon_los_db(100.0, UMI_FC, UMI_H_BS, UMI_H_UT))

    assert loss == pytest.approx(85.314, abs=0.01)


def test_umi_nlos_not_below_los():
    distances = np.array([10.0, 50.0, 200.0, 500.0, 1000.0, 5000.0])

    los = np.asarray(umi_street_canyon_los_db(distances, UMI_FC, UMI_H_BS, UMI_H_UT))
    nlos = np.asarray(umi_street_canyon_nlos_db(distances, UMI_FC, UMI_H_BS, UMI_H_UT))

    assert np.all(nlos >= los)


@pytest.mark.parametrize("d2d, h_ut", [(100.0, 1.5), (1000.0, 1.5), (300.0, 10.0)])
def test_umi_nlos_equals_dominant_pl_prime(d2d, h_ut):
    los_by_hand = umi_pl1(d2d, h_ut) if d2d <= 4.0 * 9.0 * (h_ut - 1.0) * UMI_FC / C else umi_pl2(d2d, h_ut)
    assert umi_nlos_prime(d2d, h_ut) > los_by_hand

    loss = as_float(umi_street_canyon_nlos_db(d2d, UMI_FC, UMI_H_BS, h_ut))

    assert loss == pytest.approx(umi_nlos_prime(d2d, h_ut), abs=DB_TOLERANCE)


# --- UMa at fc = 2 GHz, h_BS = 25 m, h_UT = 1.5 m ------------------------------------------------

UMA_FC = 2e9
UMA_H_BS = 25.0
UMA_H_UT = 1.5
# d'_BP = 4 (h_BS - 1) (h_UT - 1) fc / c = 4 * 24 * 0.5 * 2e9 / c = 320.22 m
UMA_BREAKPOINT = 4.0 * 24.0 * 0.5 * 2e9 / C


def uma_d3d(d2d):
    return math.sqrt(d2d**2 + (UMA_H_BS - UMA_H_UT) ** 2)


def uma_pl1(d2d):
    return 28.0 + 22.0 * math.log10(uma_d3d(d2d)) + 20.0 * math.log10(2.0)


def uma_pl2(d2d):
    return (28.0 + 40.0 * math.log10(uma_d3d(d2d)) + 20.0 * math.log10(2.0)
            - 9.0 * math.log10(UMA_BREAKPOINT**2 + (UMA_H_BS - UMA_H_UT) ** 2))


def uma_nlos_prime(d2d):
    return 13.54 + 39.08 * math.log10(uma_d3d(d2d)) + 20.0 * math.log10(2.0) - 0.6 * (UMA_H_UT - 1.5)


def test_uma_breakpoint_by_hand():
    assert UMA_BREAKPOINT == pytest.approx(320.22, abs=0.01)


@pytest.mark.parametrize("d2d", [10.0, 100.0, UMA_BREAKPOINT - 1.0])
def test_uma_los_below_breakpoint_is_pl1(d2d):
    loss = as_float(uma_los_db(d2d, UMA_FC, UMA_H_BS, UMA_H_UT))

    assert loss == pytest.approx(uma_pl1(d2d), abs=DB_TOLERANCE)


@pytest.mark.parametrize("d2d", [UMA_BREAKPOINT + 1.0, 1000.0, 5000.0])
def test_uma_los_above_breakpoint_is_pl2(d2d):
    loss = as_float(uma_los_db(d2d, UMA_FC, UMA_H_BS, UMA_H_UT))

    assert loss == pytest.approx(uma_pl2(d2d), abs=DB_TOLERANCE)


def test_uma_los_at_100m_value():
    # d3D = sqrt(100^2 + 23.5^2) = 102.724 m, so PL1 = 28.0 + 22 * 2.01167 + 20 * 0.30103 = 78.277 dB
    loss = as_float(uma_los_db(100.0, UMA_FC, UMA_H_BS, UMA_H_UT))

    assert loss == pytest.approx(78.277, abs=0.01)


def test_uma_nlos_not_below_los():
    distances = np.array([10.0, 50.0, 200.0, 500.0, 1000.0, 5000.0])

    los = np.asarray(uma_los_db(distances, UMA_FC, UMA_H_BS, UMA_H_UT))
    nlos = np.asarray(uma_nlos_db(distances, UMA_FC, UMA_H_BS, UMA_H_UT))

    assert np.all(nlos >= los)


@pytest.mark.parametrize("d2d", [50.0, 200.0, 1000.0])
def test_uma_nlos_equals_dominant_pl_prime(d2d):
    los_by_hand = uma_pl1(d2d) if d2d <= UMA_BREAKPOINT else uma_pl2(d2d)
    assert uma_nlos_prime(d2d) > los_by_hand

    loss = as_float(uma_nlos_db(d2d, UMA_FC, UMA_H_BS, UMA_H_UT))

    assert loss == pytest.approx(uma_nlos_prime(d2d), abs=DB_TOLERANCE)


# --- LOS probabilities ---------------------------------------------------------------------------


@pytest.mark.parametrize("d2d, expected", [
    (10.0, 1.0),
    (18.0, 1.0),
    (100.0, 18.0 / 100.0 + math.exp(-100.0 / 36.0) * (1.0 - 18.0 / 100.0)),  # 0.23098
    (1000.0, 18.0 / 1000.0 + math.exp(-1000.0 / 36.0) * (1.0 - 18.0 / 1000.0)),  # 0.018
])
def test_umi_los_probability(d2d, expected):
    assert as_float(umi_los_probability(d2d)) == pytest.approx(expected, abs=1e-6)


def uma_base_probability(d2d):
    return 18.0 / d2d + math.exp(-d2d / 63.0) * (1.0 - 18.0 / d2d)


@pytest.mark.parametrize("d2d, expected", [
    (10.0, 1.0),
    (18.0, 1.0),
    (100.0, 18.0 / 100.0 + math.exp(-100.0 / 63.0) * (1.0 - 18.0 / 100.0)),  # 0.34763
    (1000.0, 18.0 / 1000.0 + math.exp(-1000.0 / 63.0) * (1.0 - 18.0 / 1000.0)),  # 0.018
])
def test_uma_los_probability_low_ut(d2d, expected):
    assert as_float(uma_los_probability(d2d, 1.5)) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("d2d", [10.0, 18.0, 100.0, 1000.0])
def test_uma_los_probability_high_ut(d2d):
    c_prime = ((18.0 - 13.0) / 10.0) ** 1.5  # 0.35355
    if d2d <= 18.0:
        expected = 1.0
    else:
        expected = uma_base_probability(d2d) * (1.0 + c_prime * 5.0 / 4.0 * (d2d / 100.0) ** 3 * math.exp(-d2d / 150.0))

    assert as_float(uma_los_probability(d2d, 18.0)) == pytest.approx(expected, rel=1e-5)


def test_uma_high_ut_raises_far_probability():
    # At 1000 m and h_UT = 18 m the height term is 1 + 0.35355 * 1.25 * 1000 * exp(-6.667) = 1.562.
    low = as_float(uma_los_probability(1000.0, 1.5))
    high = as_float(uma_los_probability(1000.0, 18.0))

    assert high / low == pytest.approx(1.0 + 0.35355 * 1.25 * 1000.0 * math.exp(-1000.0 / 150.0), rel=1e-4)


def test_uma_los_probability_clipped_to_one():
    # At 18.2 m with h_UT = 22.5 m the Table 7.4.2-1 product is 1.0034.
    c_prime = ((22.5 - 13.0) / 10.0) ** 1.5
    unclipped = uma_base_probability(18.2) * (1.0 + c_prime * 1.25 * 0.182**3 * math.exp(-18.2 / 150.0))
    assert unclipped > 1.0

    assert as_float(uma_los_probability(18.2, 22.5)) == 1.0


def test_los_probability_finite_at_zero_distance():
    assert as_float(umi_los_probability(0.0)) == 1.0
    assert as_float(uma_los_probability(0.0, 18.0)) == 1.0


# --- LOS/NLOS mixing -----------------------------------------------------------------------------


def test_mixed_picks_los_iff_u_below_p():
    los = np.full(5, 80.0)
    nlos = np.full(5, 100.0)
    p = np.array([0.3, 0.3, 0.3, 0.0, 1.0])
    u = np.array([0.0, 0.2999, 0.3, 0.0, 0.9999])

    chosen = np.asarray(mixed_db(los, nlos, p, u))

    np.testing.assert_array_equal(chosen, [80.0, 80.0, 100.0, 100.0, 80.0])


def test_mixed_los_fraction_matches_probability():
    u = np.asarray(jax.random.uniform(jax.random.PRNGKey(0), (100_000,)))

    chosen = np.asarray(mixed_db(80.0, 100.0, 0.3, u))

    # Binomial standard error sqrt(0.3 * 0.7 / 1e5) = 0.00145.
    assert (chosen == 80.0).mean() == pytest.approx(0.3, abs=0.006)


def test_expected_gain_by_hand():
    # -10 log10(0.5 * 1e-10 + 0.5 * 1e-12) = -10 log10(5.05e-11) = 102.967 dB
    expected = -10.0 * math.log10(0.5 * 10.0 ** (-100.0 / 10.0) + 0.5 * 10.0 ** (-120.0 / 10.0))

    assert as_float(expected_gain_db(100.0, 120.0, 0.5)) == pytest.approx(expected, abs=DB_TOLERANCE)


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.9])
def test_expected_gain_between_los_and_nlos(p):
    loss = as_float(expected_gain_db(95.0, 115.0, p))

    assert 95.0 < loss < 115.0


def test_expected_gain_endpoints():
    assert as_float(expected_gain_db(100.0, 120.0, 1.0)) == pytest.approx(100.0, abs=DB_TOLERANCE)
    assert as_float(expected_gain_db(100.0, 120.0, 0.0)) == pytest.approx(120.0, abs=DB_TOLERANCE)


def test_expected_gain_no_underflow():
    # Both losses are 300 dB above those of test_expected_gain_by_hand, so the result is 402.967 dB.
    # Their linear gains, 1e-40 and 1e-42, are below float32's smallest normal number.
    expected = 300.0 - 10.0 * math.log10(0.5 * 10.0 ** (-100.0 / 10.0) + 0.5 * 10.0 ** (-120.0 / 10.0))

    assert as_float(expected_gain_db(400.0, 420.0, 0.5)) == pytest.approx(expected, abs=DB_TOLERANCE)


def test_expected_gain_broadcasts():
    loss = np.asarray(expected_gain_db(np.array([90.0, 100.0, 110.0]), 120.0, np.array([[0.2], [0.8]])))

    assert loss.shape == (2, 3)
    assert loss[1, 0] == pytest.approx(-10.0 * math.log10(0.8e-9 + 0.2e-12), abs=DB_TOLERANCE)


# --- jax.jit ------------------------------------------------------------------------------------

DISTANCES = np.array([10.0, 35.0, 150.0, 400.0, 2000.0, 5000.0])

JIT_CASES = [
    ("free_space", (DISTANCES, 3.5e9)),
    ("log_distance", (DISTANCES, 3.5e9, 3.2, 1.0)),
    ("umi_los", (DISTANCES, 3.5e9, 10.0, 1.5)),
    ("umi_nlos", (DISTANCES, 3.5e9, 10.0, 1.5)),
    ("uma_los", (DISTANCES, 2e9, 25.0, 1.5)),
    ("uma_nlos", (DISTANCES, 2e9, 25.0, 1.5)),
]


@pytest.mark.parametrize("name, args", JIT_CASES)
def test_model_jit_matches_numpy(name, args):
    model = MODELS[name]

    from_numpy = np.asarray(model(*args))
    from_jit = np.asarray(jax.jit(model)(*(jnp.asarray(a) for a in args)))

    assert np.all(np.isfinite(from_numpy))
    np.testing.assert_allclose(from_jit, from_numpy, rtol=1e-6)


def test_los_probability_and_mixing_under_jit():
    u = np.linspace(0.0, 0.99, DISTANCES.size)

    @jax.jit
    def mixed_losses(d2d, u):
        p = uma_los_probability(d2d, 18.0)
        los = uma_los_db(d2d, 2e9, 25.0, 18.0)
        nlos = uma_nlos_db(d2d, 2e9, 25.0, 18.0)
        return umi_los_probability(d2d), p, mixed_db(los, nlos, p, u), expected_gain_db(los, nlos, p)

    from_jit = mixed_losses(jnp.asarray(DISTANCES), jnp.asarray(u))

    p = uma_los_probability(DISTANCES, 18.0)
    los = uma_los_db(DISTANCES, 2e9, 25.0, 18.0)
    nlos = uma_nlos_db(DISTANCES, 2e9, 25.0, 18.0)
    from_numpy = (umi_los_probability(DISTANCES), p, mixed_db(los, nlos, p, u), expected_gain_db(los, nlos, p))
    for jitted, plain in zip(from_jit, from_numpy):
        np.testing.assert_allclose(np.asarray(jitted), np.asarray(plain), rtol=1e-6)


# --- check_validity ------------------------------------------------------------------------------

VALID_INPUTS = {
    "umi_los": dict(d2d_min_m=10.0, d2d_max_m=5000.0, carrier_hz=3.5e9, h_bs_m=10.0, h_ut_m=1.5),
    "umi_nlos": dict(d2d_min_m=20.0, d2d_max_m=800.0, carrier_hz=28e9, h_bs_m=10.0, h_ut_m=22.5),
    "uma_los": dict(d2d_min_m=35.0, d2d_max_m=1000.0, carrier_hz=2e9, h_bs_m=25.0, h_ut_m=1.5),
    "uma_nlos": dict(d2d_min_m=10.0, d2d_max_m=5000.0, carrier_hz=0.5e9, h_bs_m=25.0, h_ut_m=18.0),
}


@pytest.mark.parametrize("model", sorted(VALID_INPUTS))
def test_validity_passes_valid_input(model):
    check_validity(model, **VALID_INPUTS[model])


def test_validity_covers_3gpp_models():
    assert set(VALIDITY) == set(VALID_INPUTS)
    assert VALIDITY["umi_los"]["d2d_m"] == (10.0, 5000.0)
    assert VALIDITY["uma_nlos"]["h_ut_m"] == (1.5, 22.5)
    assert VALIDITY["uma_los"]["carrier_hz"] == (0.5e9, 100e9)


@pytest.mark.parametrize("model", sorted(VALID_INPUTS))
@pytest.mark.parametrize("field, value, shown", [
    ("d2d_min_m", 3.2, "minimum of 3.2 m"),
    ("d2d_max_m", 6000.0, "maximum of 6000 m"),
    ("h_ut_m", 0.5, "got 0.5 m"),
    ("h_ut_m", 30.0, "got 30 m"),
    ("carrier_hz", 0.3e9, "got 0.3 GHz"),
    ("carrier_hz", 150e9, "got 150 GHz"),
    ("h_bs_m", 0.0, "got 0 m"),
])
def test_validity_rejects_out_of_range(model, field, value, shown):
    inputs = dict(VALID_INPUTS[model], **{field: value})

    with pytest.raises(ValueError, match=re.escape(shown)) as error:
        check_validity(model, **inputs)

    message = str(error.value)
    assert message.startswith(f"{model} path loss")
    assert "\n" not in message


def test_validity_message_names_range():
    inputs = dict(VALID_INPUTS["umi_los"], d2d_min_m=3.2)

    with pytest.raises(ValueError) as error:
        check_validity("umi_los", **inputs)

    assert str(error.value) == (
        "umi_los path loss is valid for 2D distances of 10 to 5000 m, got a minimum of 3.2 m; "
        "keep the device farther from the base station or choose log_distance"
    )


def test_validity_rejects_nan():
    inputs = dict(VALID_INPUTS["uma_los"], h_ut_m=float("nan"))

    with pytest.raises(ValueError, match="got nan m"):
        check_validity("uma_los", **inputs)


def test_validity_rejects_swapped_distances():
    with pytest.raises(ValueError, match="exceeds the maximum"):
        check_validity("umi_los", 500.0, 100.0, 3.5e9, 10.0, 1.5)


def test_validity_rejects_unknown_model():
    with pytest.raises(ValueError, match="unknown path-loss model 'rma_los'"):
        check_validity("rma_los", 10.0, 100.0, 3.5e9, 10.0, 1.5)


@pytest.mark.parametrize("model", ["free_space", "log_distance"])
def test_validity_simple_models_positive_distance(model):
    # These inputs are outside every 3GPP range, but the simple models accept them.
    check_validity(model, 0.5, 20_000.0, 300e9, 10.0, 40.0)

    with pytest.raises(ValueError, match="got a minimum of 0 m"):
        check_validity(model, 0.0, 100.0, 3.5e9, 10.0, 1.5)
