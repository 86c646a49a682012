"""Device trajectories in the plane, sampled at a fixed time step.

Every generator returns positions of shape [steps, 2] in metres, ordered (x, y),
where row k is the position at time k * step_s (``load_trace`` starts at the
trace's first time instead). Heights are not modelled here: ``distances`` takes
the height difference to the base station as an argument.

``straight``, ``polyline``, ``circle`` and ``load_trace`` are deterministic and
return float64 NumPy arrays. ``random_waypoint`` is a pure JAX function that
can be jitted and vmapped over keys. ``speeds`` and ``distances`` use
jax.numpy, so they accept NumPy or JAX arrays and run under jit.
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np

TRACE_HEADERS = (("t", "x", "y"), ("t", "x", "y", "z"))


def _check_sampling(steps: int, step_s: float) -> None:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not (math.isfinite(step_s) and step_s > 0):
        raise ValueError(f"step_s must be a positive number of seconds, got {step_s!r}")


def _check_speed(speed_mps: float) -> None:
    if not (math.isfinite(speed_mps) and speed_mps >= 0):
        raise ValueError(f"speed_mps must be a finite non-negative number, got {speed_mps!r}")


def straight(steps: int, step_s: float, speed_mps: float, closest_m: float) -> np.ndarray:
    """Sample a straight pass along y = closest_m at constant speed, float64 [steps, 2] in metres.

    x = speed_mps * (k - (steps - 1) / 2) * step_s, so the device is at x = 0,
    closest to the origin, halfway through the run. The distances of these points
    to the origin equal ``jsplit.channel.straight_pass_distances`` bit for bit.
    """
    _check_sampling(steps, step_s)
    # Same operation order as channel.straight_pass_distances, so np.hypot of the rows matches it exactly.
    time_s = (np.arange(steps) - (steps - 1) / 2.0) * step_s
    x = speed_mps * time_s
    y = np.full(steps, float(closest_m))
    return np.stack([x, y], axis=1)


def polyline(waypoints_m, speed_mps: float, steps: int, step_s: float) -> np.ndarray:
    """Sample constant-speed motion along a polyline, float64 [steps, 2] in metres.

    The device starts at the first waypoint at time 0 and follows the segments
    in order at ``speed_mps``. Once it reaches the last waypoint it stays there.

    Raises ValueError unless ``waypoints_m`` is a finite [n, 2] array with n >= 2
    whose consecutive points are distinct. The message names the offending index.
    """
    _check_sampling(steps, step_s)
    _check_speed(speed_mps)
    points = np.asarray(waypoints_m, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"waypoints_m must be a list of [x, y] pairs, got shape {points.shape}")
    if points.shape[0] < 2:
        raise ValueError(f"waypoints_m needs at least 2 waypoints, got {points.shape[0]}")
    for index, point in enumerate(points):
        if not np.all(np.isfinite(point)):
            raise ValueError(f"waypoint {index} is not finite: {point.tolist()}")

    segment_lengths = np.hypot(*np.diff(points, axis=0).T)
    for index, length in enumerate(segment_lengths):
        if length == 0.0:
            raise ValueError(
                f"waypoints {index} and {index + 1} are the same point {points[index].tolist()}. "
                "Consecutive waypoints must be distinct."
            )

    # Arc length at each waypoint, then the arc length travelled at each step. np.interp clamps
    # travelled lengths past the end to the last waypoint, which keeps the device there.
    waypoint_arc_m = np.concatenate([[0.0], np.cumsum(segment_lengths)])
    travelled_m = speed_mps * np.arange(steps) * step_s
    x = np.interp(travelled_m, waypoint_arc_m, points[:, 0])
    y = np.interp(travelled_m, waypoint_arc_m, points[:, 1])
    return np.stack([x, y], axis=1)


def circle(center_m, radius_m: float, speed_mps: float, steps: int, step_s: float) -> np.ndarray:
    """Sample uniform counter-clockwise circular motion, float64 [steps, 2] in metres.

    The device starts at angle 0, the point (center_x + radius_m, center_y), and
    moves at ``speed_mps`` along the circle, so the angular speed is
    speed_mps / radius_m rad/s.
    """
    _check_sampling(steps, step_s)
    _check_speed(speed_mps)
    if not (math.isfinite(radius_m) and radius_m > 0):
        raise ValueError(f"radius_m must be a positive number of metres, got {radius_m!r}")
    center_x, center_y = (float(value) for value in center_m)

    angle_rad = (speed_mps / radius_m) * np.arange(steps) * step_s
    x = center_x + radius_m * np.cos(angle_rad)
    y = center_y + radius_m * np.sin(angle_rad)
    return np.stack([x, y], axis=1)


def _is_concrete(value) -> bool:
    return not isinstance(value, jax.core.Tracer)


def _check_random_waypoint_args(area_m, speed_range_mps, pause_s) -> None:
    """Raise ValueError on an invalid area, speed range or pause. Traced values are not checked."""
    if len(area_m) != 4:
        raise ValueError(f"area_m must be (x_min, x_max, y_min, y_max), got {area_m!r}")
    if len(speed_range_mps) != 2:
        raise ValueError(f"speed_range_mps must be (v_min, v_max), got {speed_range_mps!r}")

    if all(_is_concrete(value) for value in area_m):
        x_min, x_max, y_min, y_max = (float(value) for value in area_m)
        if not (x_min < x_max and y_min < y_max):
            raise ValueError(f"area_m must satisfy x_min < x_max and y_min < y_max, got {area_m!r}")
    if all(_is_concrete(value) for value in speed_range_mps):
        v_min, v_max = (float(value) for value in speed_range_mps)
        # With v_min = 0, legs can last arbitrarily long, so the average speed keeps falling over time.
        if not (0 < v_min <= v_max and math.isfinite(v_max)):
            raise ValueError(f"speed_range_mps must satisfy 0 < v_min <= v_max, got {speed_range_mps!r}")
    if _is_concrete(pause_s) and not (float(pause_s) >= 0 and math.isfinite(float(pause_s))):
        raise ValueError(f"pause_s must be a non-negative number of seconds, got {pause_s!r}")


def random_waypoint(key: jax.Array, steps: int, step_s: float, area_m, speed_range_mps, pause_s) -> jax.Array:
    """Sample one random waypoint trajectory (Johnson and Maltz 1996), float32 [steps, 2] in metres.

    The device starts at a uniform point of the rectangle area_m = (x_min, x_max,
    y_min, y_max). It then repeats: draw a uniform destination in the rectangle
    and a uniform speed in speed_range_mps = (v_min, v_max), travel there in a
    straight line, and pause for pause_s seconds. v_min must be positive.

    ``steps`` and ``step_s`` must be static Python numbers. The function is pure,
    so it runs under jax.jit and jax.vmap over ``key`` and returns the same path
    for the same key.

    NOTE: a step handles at most one arrival. Time left in a step after an arrival
    counts toward the pause, but when pause_s is shorter than that leftover time
    the rest of the step is spent standing at the waypoint. A leg that is
    shorter than one step therefore lasts a whole step.
    """
    _check_sampling(steps, step_s)
    _check_random_waypoint_args(area_m, speed_range_mps, pause_s)
    x_min, x_max, y_min, y_max = area_m
    low = jnp.array([x_min, y_min], jnp.float32)
    high = jnp.array([x_max, y_max], jnp.float32)
    v_min, v_max = speed_range_mps
    pause_s = jnp.asarray(pause_s, jnp.float32)

    def draw_destination(k):
        return jax.random.uniform(k, (2,), jnp.float32, low, high)

    def draw_speed(k):
        return jax.random.uniform(k, (), jnp.float32, v_min, v_max)

    key, start_key, destination_key, speed_key = jax.random.split(key, 4)
    initial = (draw_destination(start_key), draw_destination(destination_key), draw_speed(speed_key),
               jnp.zeros((), jnp.float32), key)

    def advance(carry, _):
        position, destination, speed, pause_remaining, key = carry
        key, destination_key, speed_key = jax.random.split(key, 3)

        # Pause first. Whatever time of the step the pause does not use goes to travel.
        paused_s = jnp.minimum(pause_remaining, step_s)
        pause_remaining = pause_remaining - paused_s
        moving_s = step_s - paused_s

        offset = destination - position
        distance_left = jnp.sqrt(jnp.sum(offset * offset))
        travel = speed * moving_s
        arrived = (moving_s > 0) & (travel >= distance_left)

        # Guard the division: distance_left is 0 only right at a waypoint, where travel is skipped.
        direction = offset / jnp.where(distance_left > 0, distance_left, 1.0)
        moved = position + direction * jnp.minimum(travel, distance_left)

        # On arrival, start the pause with the rest of the step already spent, then draw the next leg.
        leftover_s = jnp.where(arrived, moving_s - distance_left / speed, 0.0)
        new_position = jnp.where(arrived, destination, moved)
        new_destination = jnp.where(arrived, draw_destination(destination_key), destination)
        new_speed = jnp.where(arrived, draw_speed(speed_key), speed)
        new_pause = jnp.where(arrived, jnp.maximum(pause_s - leftover_s, 0.0), pause_remaining)

        return (new_position, new_destination, new_speed, new_pause, key), position

    _, positions = jax.lax.scan(advance, initial, None, length=steps)
    return positions


def _parse_trace_row(fields, expected_fields, label):
    """Convert one data row to floats, raising ValueError prefixed with ``label`` on a bad field."""
    if len(fields) != expected_fields:
        raise ValueError(f"{label}: expected {expected_fields} fields, got {len(fields)}: {','.join(fields)!r}")
    values = []
    for name, text in zip(TRACE_HEADERS[expected_fields - 3], fields):
        text = text.strip()
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{label}: {name} value {text!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{label}: {name} value {text!r} is not finite")
        values.append(value)
    return values


def load_trace(path, steps: int, step_s: float) -> np.ndarray:
    """Read a CSV position trace and resample it, float64 [steps, 2], or [steps, 3] with z.

    The first non-comment line is the header ``t,x,y`` or ``t,x,y,z``, followed
    by one row per sample: time in seconds, positions in metres. Lines whose
    first non-blank character is ``#`` are comments, and blank lines are skipped.
    Times must increase strictly, and the file needs at least 2 rows.

    Row k of the result is the linear interpolation of the trace at time
    t0 + k * step_s, where t0 is the first row's time. After the last row's time
    the device stays at the last position.

    Raises ValueError when the file does not exist, and on a bad header, a row
    with the wrong number of fields, a non-numeric or non-finite value, a time
    that does not increase, or fewer than 2 rows. Messages give the path and
    the 1-based line number.
    """
    _check_sampling(steps, step_s)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"trace file {path} does not exist")

    header = None
    rows = []
    last_row_line = None
    with open(path, encoding="utf-8-sig") as handle:
        for line_number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split(",")
            label = f"{path} line {line_number}"

            if header is None:
                names = tuple(field.strip().lower() for field in fields)
                if names not in TRACE_HEADERS:
                    raise ValueError(f"{label}: header {','.join(fields)!r} is invalid. Expected 't,x,y' or 't,x,y,z'.")
                header = names
                header_line = line_number
                continue

            values = _parse_trace_row(fields, len(header), label)
            if rows and values[0] <= rows[-1][0]:
                raise ValueError(f"{label}: time {values[0]!r} does not increase (previous {rows[-1][0]!r})")
            rows.append(values)
            last_row_line = line_number

    if header is None:
        raise ValueError(f"{path}: no header line found. Expected 't,x,y' or 't,x,y,z'.")
    if len(rows) < 2:
        where = f"line {last_row_line}" if rows else f"line {header_line} (header)"
        raise ValueError(f"{path} {where}: the trace ends after {len(rows)} data row(s), but at least 2 are needed")

    trace = np.asarray(rows, dtype=np.float64)
    times_s = trace[0, 0] + np.arange(steps) * step_s
    # np.interp returns the last value for times past the end of the trace.
    columns = [np.interp(times_s, trace[:, 0], trace[:, column]) for column in range(1, trace.shape[1])]
    return np.stack(columns, axis=1)


def _as_float_array(values) -> jax.Array:
    array = jnp.asarray(values)
    if not jnp.issubdtype(array.dtype, jnp.floating):
        array = array.astype(jnp.float32)
    return array


def speeds(positions, step_s: float) -> jax.Array:
    """Compute the speed in m/s at each step from finite differences, [steps].

    ``positions`` is [steps, dims] in metres, and the speed uses all dims.
    Step 0 takes the forward difference and every later step the backward
    difference, so speeds[0] == speeds[1]. A single-step trajectory has speed 0.
    """
    positions = _as_float_array(positions)
    if positions.shape[0] < 2:
        return jnp.zeros(positions.shape[:1], positions.dtype)
    step_lengths = jnp.linalg.norm(jnp.diff(positions, axis=0), axis=-1)
    backward = step_lengths / step_s
    return jnp.concatenate([backward[:1], backward])


def distances(positions, base_station_m, height_diff_m=0.0) -> jax.Array:
    """Compute the 3D distance in metres from each position to a base station, [...].

    ``positions`` is [..., 2] as (x, y) in metres and ``base_station_m`` is the
    station's (x, y). ``height_diff_m`` is the height difference between device
    and station in metres, a scalar or an array that broadcasts against
    positions[..., 0], for example a per-step height from a trace with z.
    """
    positions = _as_float_array(positions)
    if positions.shape[-1] != 2:
        raise ValueError(f"positions must have shape [..., 2] as (x, y), got {positions.shape}")
    station = jnp.asarray(base_station_m, positions.dtype)
    dx = positions[..., 0] - station[0]
    dy = positions[..., 1] - station[1]
    dz = jnp.asarray(height_diff_m, positions.dtype)
    return jnp.sqrt(dx * dx + dy * dy + dz * dz)
