import functools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsplit.channel import straight_pass_distances
from jsplit.trajectory import circle, distances, load_trace, polyline, random_waypoint, speeds, straight

DATA = Path(__file__).parent / "data"

AREA_M = (0.0, 100.0, -20.0, 30.0)
SPEED_RANGE_MPS = (1.0, 5.0)


@pytest.mark.parametrize("steps, step_s, speed_mps, closest_m", [(101, 0.1, 20.0, 50.0), (64, 0.25, 3.0, 7.5)])
def test_straight_matches_channel_distances(steps, step_s, speed_mps, closest_m):
    positions = straight(steps, step_s, speed_mps, closest_m)
    expected = straight_pass_distances(steps, step_s, speed_mps, closest_m)

    assert positions.shape == (steps, 2)
    np.testing.assert_array_equal(np.hypot(positions[:, 0], positions[:, 1]), expected)
    np.testing.assert_allclose(np.asarray(distances(positions, (0.0, 0.0))), expected, rtol=1e-6)


def test_straight_is_closest_halfway():
    positions = straight(5, 1.0, 2.0, 10.0)

    np.testing.assert_array_equal(positions[:, 0], [-4.0, -2.0, 0.0, 2.0, 4.0])
    np.testing.assert_array_equal(positions[:, 1], [10.0] * 5)


def test_polyline_positions_by_hand():
    positions = polyline([[0, 0], [3, 0], [3, 4]], speed_mps=1.0, steps=21, step_s=1.0)

    assert positions.shape == (21, 2)
    np.testing.assert_allclose(positions[0], [0.0, 0.0])
    np.testing.assert_allclose(positions[3], [3.0, 0.0])
    np.testing.assert_allclose(positions[5], [3.0, 2.0])
    np.testing.assert_allclose(positions[7], [3.0, 4.0])
    np.testing.assert_allclose(positions[20], [3.0, 4.0])


def test_polyline_constant_speed_until_end():
    measured = np.asarray(speeds(polyline([[0, 0], [3, 0], [3, 4]], 1.0, 21, 1.0), 1.0))

    # The corner at step 3 cuts the step 3 -> 4 chord, so only whole-segment steps are checked.
    np.testing.assert_allclose(measured[:4], 1.0, rtol=1e-6)
    np.testing.assert_allclose(measured[5:8], 1.0, rtol=1e-6)
    np.testing.assert_array_equal(measured[8:], 0.0)


@pytest.mark.parametrize("waypoints, message", [
    ([[0, 0]], "at least 2 waypoints"),
    ([[0, 0], [1, 0], [1, 0]], "waypoints 1 and 2 are the same point"),
    ([[0, 0], [0, 0]], "waypoints 0 and 1 are the same point"),
    ([[0, 0, 0], [1, 0, 0]], "list of [x, y] pairs"),
    ([[0, 0], [1, math.nan]], "waypoint 1 is not finite"),
])
def test_polyline_rejects_bad_waypoints(waypoints, message):
    with pytest.raises(ValueError) as error:
        polyline(waypoints, 1.0, 10, 1.0)

    assert message in str(error.value)


def test_circle_stays_on_radius():
    positions = circle((5.0, -3.0), 10.0, 2.0, 500, 0.1)
    radii = np.hypot(positions[:, 0] - 5.0, positions[:, 1] + 3.0)

    np.testing.assert_allclose(radii, 10.0, rtol=1e-12)


def test_circle_start_and_direction():
    # Angular speed pi m/s / 2 m = pi / 2 rad/s, so a quarter turn takes 1 s, or 4 steps of 0.25 s.
    positions = circle((5.0, -3.0), 2.0, math.pi, 13, 0.25)

    np.testing.assert_allclose(positions[0], [7.0, -3.0], atol=1e-12)
    np.testing.assert_allclose(positions[4], [5.0, -1.0], atol=1e-12)
    np.testing.assert_allclose(positions[8], [3.0, -3.0], atol=1e-12)
    np.testing.assert_allclose(positions[12], [5.0, -5.0], atol=1e-12)


def test_circle_speeds_match_speed():
    measured = np.asarray(speeds(circle((5.0, -3.0), 10.0, 2.0, 500, 0.1), 0.1))

    # The chord is 2 r sin(w dt / 2), shorter than the arc v dt by a factor of about 1 - (w dt)^2 / 24 = 1 - 2e-5.
    np.testing.assert_allclose(measured, 2.0, rtol=0.01)


def sample_random_waypoint_batch(keys, steps=600, pause_s=5.0):
    sample = functools.partial(random_waypoint, steps=steps, step_s=1.0, area_m=AREA_M,
                               speed_range_mps=SPEED_RANGE_MPS, pause_s=pause_s)
    return np.asarray(jax.jit(jax.vmap(sample))(keys))


@pytest.fixture(scope="module")
def waypoint_paths():
    keys = jax.random.split(jax.random.PRNGKey(0), 8)
    return keys, sample_random_waypoint_batch(keys)


def test_random_waypoint_inside_area(waypoint_paths):
    _, paths = waypoint_paths
    x_min, x_max, y_min, y_max = AREA_M

    assert paths.shape == (8, 600, 2)
    assert paths[..., 0].min() >= x_min
    assert paths[..., 0].max() <= x_max
    assert paths[..., 1].min() >= y_min
    assert paths[..., 1].max() <= y_max


def test_random_waypoint_keys_differ(waypoint_paths):
    _, paths = waypoint_paths

    for i in range(8):
        for j in range(i + 1, 8):
            assert not np.allclose(paths[i], paths[j]), f"paths {i} and {j} are equal"


def test_random_waypoint_is_deterministic(waypoint_paths):
    keys, paths = waypoint_paths

    np.testing.assert_array_equal(sample_random_waypoint_batch(keys), paths)
    eager = np.asarray(random_waypoint(keys[3], 600, 1.0, AREA_M, SPEED_RANGE_MPS, 5.0))
    np.testing.assert_allclose(eager, paths[3], atol=1e-4)


def test_random_waypoint_speeds_within_range(waypoint_paths):
    _, paths = waypoint_paths
    measured = np.asarray(jax.vmap(speeds, in_axes=(0, None))(paths, 1.0))
    v_min, v_max = SPEED_RANGE_MPS

    assert measured.max() <= v_max * (1 + 1e-5)
    moving = measured[measured > 0]
    assert v_min <= np.median(moving) <= v_max


def test_random_waypoint_pauses_stop_device(waypoint_paths):
    _, paths = waypoint_paths
    measured = np.asarray(jax.vmap(speeds, in_axes=(0, None))(paths, 1.0))

    assert (measured == 0).any()
    # A 5 s pause that starts during the arrival step keeps the device still for at least 4 whole steps.
    longest_run = 0
    for row in measured == 0:
        run = 0
        for still in row:
            run = run + 1 if still else 0
            longest_run = max(longest_run, run)
    assert longest_run >= 4


def test_random_waypoint_rejects_zero_min_speed():
    with pytest.raises(ValueError) as error:
        random_waypoint(jax.random.PRNGKey(0), 10, 1.0, AREA_M, (0.0, 5.0), 0.0)

    assert "0 < v_min <= v_max" in str(error.value)


def test_load_trace_resamples_linearly():
    positions = load_trace(DATA / "trace_ok.csv", steps=14, step_s=0.5)

    assert positions.shape == (14, 2)
    # t = 1.5 s lies 3/4 of the way along the first leg: x = 0.75 * 4 m.
    np.testing.assert_allclose(positions[3], [3.0, 0.0])
    # t = 3.5 s lies half-way along the second leg, from t = 2 s to t = 5 s: y = 0.5 * 6 m.
    np.testing.assert_allclose(positions[7], [4.0, 3.0])
    np.testing.assert_allclose(positions[10], [4.0, 6.0])


def test_load_trace_holds_last_position():
    positions = load_trace(DATA / "trace_ok.csv", steps=14, step_s=0.5)

    np.testing.assert_array_equal(positions[10:], [[4.0, 6.0]] * 4)


def test_load_trace_with_height():
    positions = load_trace(DATA / "trace_with_z.csv", steps=6, step_s=1.0)

    assert positions.shape == (6, 3)
    np.testing.assert_allclose(positions[0], [0.0, 0.0, 1.5])
    # t = 11 s, a quarter of the way from t = 10 s to t = 14 s.
    np.testing.assert_allclose(positions[1], [2.0, -1.0, 2.0])
    np.testing.assert_allclose(positions[5], [8.0, -4.0, 3.5])


@pytest.mark.parametrize("text, line, reason", [
    ("t,x,y\n0,0,0\n1,2\n", 3, "expected 3 fields, got 2"),
    ("t,x,y,z\n0,0,0,1\n1,2,0,1,5\n", 3, "expected 4 fields, got 5"),
    ("t,x,y\n0,0,0\n1,abc,0\n", 3, "x value 'abc' is not a number"),
    ("t,x,y\n# comment\n0,0,0\n3.5,1,0\n\n3.0,2,0\n", 6, "time 3.0 does not increase (previous 3.5)"),
    ("t,x,y\n0,0,0\n0,1,0\n", 3, "time 0.0 does not increase (previous 0.0)"),
    ("t,x,y\n0,0,0\n1,nan,0\n", 3, "x value 'nan' is not finite"),
    ("t,x,y\n0,0,0\n1,0,inf\n", 3, "y value 'inf' is not finite"),
    ("t,x,y\n0,0,0\n", 2, "at least 2 are needed"),
    ("# only a header\nt,x,y\n", 2, "at least 2 are needed"),
    ("time,x,y\n0,0,0\n1,1,1\n", 1, "header 'time,x,y' is invalid. Expected 't,x,y' or 't,x,y,z'."),
])
def test_load_trace_rejects_bad_file(tmp_path, text, line, reason):
    path = tmp_path / "trace.csv"
    path.write_text(text)

    with pytest.raises(ValueError) as error:
        load_trace(path, steps=4, step_s=1.0)

    message = str(error.value)
    assert str(path) in message
    assert f"line {line}" in message
    assert reason in message


def test_load_trace_missing_file(tmp_path):
    path = tmp_path / "absent.csv"

    with pytest.raises(ValueError) as error:
        load_trace(path, steps=4, step_s=1.0)

    assert str(path) in str(error.value)
    assert "does not exist" in str(error.value)


def test_speeds_by_hand():
    positions = np.array([[0.0, 0.0], [3.0, 4.0], [3.0, 4.0], [6.0, 8.0]])

    np.testing.assert_allclose(np.asarray(speeds(positions, 0.5)), [10.0, 10.0, 0.0, 10.0])
    np.testing.assert_allclose(np.asarray(jax.jit(speeds)(jnp.asarray(positions), 0.5)), [10.0, 10.0, 0.0, 10.0])


def test_speeds_single_step_is_zero():
    np.testing.assert_array_equal(np.asarray(speeds(np.array([[2.0, 3.0]]), 1.0)), [0.0])


def test_distances_by_hand():
    positions = np.array([[3.0, 4.0], [0.0, 0.0], [6.0, 0.0]])

    np.testing.assert_allclose(np.asarray(distances(positions, (0.0, 0.0))), [5.0, 0.0, 6.0])
    np.testing.assert_allclose(np.asarray(distances(positions, (0.0, 0.0), 12.0)), [13.0, 12.0, 13.416408])
    np.testing.assert_allclose(np.asarray(distances(positions, (3.0, 0.0), [0.0, 4.0, 4.0])), [4.0, 5.0, 5.0])


def test_distances_under_jit():
    positions = jnp.array([[3.0, 4.0], [0.0, 0.0]])
    jitted = jax.jit(distances)

    np.testing.assert_allclose(np.asarray(jitted(positions, jnp.array([0.0, 0.0]), 12.0)), [13.0, 12.0])
