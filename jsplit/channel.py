"""Path loss, shadowing, fading and Shannon rate of the uplink along a trajectory.

The channel power gain at step t is ``g(t) = 10^(-L(t)/10) * f(t)``, where
``L = PL(d) + S`` is the large-scale loss in dB to the serving base station
(the one with the least loss at that step) and ``f = |h|^2`` the small-scale
fading power gain, with ``E[f] = 1``:

* path loss PL: free space, log-distance, or 3GPP TR 38.901 UMi-Street Canyon
  and UMa, LOS, NLOS or mixed by the LOS probability (``jsplit.pathloss``);
* shadowing S: log-normal with standard deviation sigma dB, correlated along
  the path as ``exp(-d / d_corr)`` (Gudmundson, Electronics Letters 1991);
* fading h: none, Rayleigh ``CN(0, 1)`` or Rician with K-factor K. It is
  correlated in time by the Doppler ``f_D = v f_c / c`` of the device's speed,
  as a Gauss-Markov process with ``rho = J0(2 pi f_D dt)`` or as a sum of
  sinusoids (Clarke/Jakes), or it is held constant over blocks of steps.

Trajectory i draws its environment (path, shadowing, LOS state) from
``fold_in(fold_in(key, i), ENVIRONMENT_STREAM)`` and realization r its fading
from ``fold_in(fold_in(key, i), r)``, so results do not depend on chunking.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

SPEED_OF_LIGHT = 299_792_458.0  # m/s


def dbm_to_w(dbm: float) -> float:
    return 10.0 ** ((dbm - 30.0) / 10.0)


def noise_density_w_per_hz(density_dbm_per_hz: float, noise_figure_db: float) -> float:
    """Receiver noise power spectral density N0 [W/Hz], the noise figure included."""
    return dbm_to_w(density_dbm_per_hz + noise_figure_db)


def doppler_hz(speed_mps, carrier_hz: float):
    """Maximum Doppler shift f_D = v f_c / c [Hz]; ``speed_mps`` may be an array."""
    return speed_mps * carrier_hz / SPEED_OF_LIGHT


def bessel_j0(x):
    """Bessel function J0 for float32 arrays under jit, within 2e-6 of scipy.special.j0 on [0, 200].

    A polynomial in (x/3)^2 below 3, and ``f0(3/x) cos(theta0(3/x)) / sqrt(x)``
    above. ``jax.scipy.special.bessel_jn`` is not used because in JAX 0.10.2 it
    returns NaN for every argument below about 3.44 (checked on a 0.001 grid).
    """
    x = jnp.abs(jnp.asarray(x, jnp.float32))
    u = (x / 3.0) ** 2
    near = 1.0 + u * (-2.2499997 + u * (1.2656208 + u * (-0.3163866 + u * (0.0444479 + u * (-0.0039444
                                                                                          + u * 0.0002100)))))
    far_x = jnp.maximum(x, 3.0)
    t = 3.0 / far_x
    amplitude = 0.79788456 + t * (-0.00000077 + t * (-0.00552740 + t * (-0.00009512 + t * (
        0.00137237 + t * (-0.00072805 + t * 0.00014476)))))
    phase = far_x - 0.78539816 + t * (-0.04166397 + t * (-0.00003954 + t * (0.00262573 + t * (
        -0.00054125 + t * (-0.00029333 + t * 0.00013558)))))
    return jnp.where(x <= 3.0, near, amplitude * jnp.cos(phase) / jnp.sqrt(far_x))


def straight_pass_distances(steps: int, step_s: float, speed_mps: float, closest_m: float) -> np.ndarray:
    """Distances [m] to a base station at the origin along a straight pass, float64 [steps].

    The device moves along the line y = closest_m at ``speed_mps`` and reaches
    x = 0 (the closest point) halfway through the run.
    """
    time_s = (np.arange(steps) - (steps - 1) / 2.0) * step_s
    return np.hypot(speed_mps * time_s, closest_m)


def first_order_autoregression(initial, innovations, rho):
    """Run ``z_t = rho_t z_{t-1} + sqrt(1 - rho_t^2) w_t`` from ``z_0 = initial``, [steps].

    ``innovations`` and ``rho`` are [steps - 1] (real or complex innovations);
    a unit-variance start and unit-variance innovations keep every step at
    unit variance.
    """
    def step(z, inputs):
        w, r = inputs
        z = r * z + jnp.sqrt(1.0 - r * r) * w
        return z, z

    _, z = jax.lax.scan(step, initial, (innovations, rho))
    return jnp.concatenate([initial[None], z])


def gauss_markov(key: jax.Array, steps: int, rho) -> jax.Array:
    """Complex Gaussian fading ``h_t = rho_t h_{t-1} + sqrt(1 - rho_t^2) w_t``, complex64 [steps].

    ``rho`` is a scalar or float32 [steps] (entry 0 is unused). ``h_0 ~ CN(0, 1)``
    starts the process in its stationary law, so every step is CN(0, 1).
    """
    draws = jax.random.normal(key, (steps, 2), jnp.float32) * jnp.sqrt(0.5)
    innovations = jax.lax.complex(draws[:, 0], draws[:, 1])
    rho = jnp.broadcast_to(jnp.asarray(rho, jnp.float32), (steps,))
    return first_order_autoregression(innovations[0], innovations[1:], rho[1:])


def rayleigh_gauss_markov(key: jax.Array, steps: int, rho) -> jax.Array:
    """Rayleigh fading power gains |h_t|^2 of one trajectory, float32 [steps], mean 1."""
    h = gauss_markov(key, steps, rho)
    return jnp.real(h) ** 2 + jnp.imag(h) ** 2


def sum_of_sinusoids(key: jax.Array, doppler_hz, step_s: float, sinusoids: int) -> jax.Array:
    """Clarke/Jakes fading as a sum of sinusoids with random arrival angles, complex64 [steps].

    ``h(t) = M^(-1/2) sum_m exp(j (2 pi cos(alpha_m) int_0^t f_D + phi_m))`` with
    alpha_m, phi_m uniform on [0, 2 pi). Averaged over the angles, the
    autocorrelation is ``J0(2 pi f_D tau)`` and E|h|^2 = 1; h tends to CN(0, 1)
    as M grows. ``doppler_hz`` is float32 [steps], the Doppler at each step.
    """
    angle_key, phase_key = jax.random.split(key)
    angles = jax.random.uniform(angle_key, (sinusoids,), jnp.float32, 0.0, 2.0 * math.pi)
    phases = jax.random.uniform(phase_key, (sinusoids,), jnp.float32, 0.0, 2.0 * math.pi)
    doppler_hz = jnp.asarray(doppler_hz, jnp.float32)
    cycles = jnp.concatenate([jnp.zeros(1), jnp.cumsum(doppler_hz[:-1] * step_s)])  # int f_D dt, [steps]
    argument = 2.0 * math.pi * cycles[:, None] * jnp.cos(angles) + phases
    return jax.lax.complex(jnp.cos(argument), jnp.sin(argument)).sum(axis=1) / math.sqrt(sinusoids)


def block_fading(key: jax.Array, steps: int, block_steps: int) -> jax.Array:
    """CN(0, 1) fading held constant over blocks of ``block_steps`` steps, independent across blocks, [steps]."""
    blocks = -(-steps // block_steps)
    draws = jax.random.normal(key, (blocks, 2), jnp.float32) * jnp.sqrt(0.5)
    return jnp.repeat(jax.lax.complex(draws[:, 0], draws[:, 1]), block_steps)[:steps]


def rician(diffuse: jax.Array, k_factor_db: float, los_phase) -> jax.Array:
    """Rician fading ``sqrt(K/(K+1)) exp(j theta) + sqrt(1/(K+1)) h_d`` with unit mean power, complex [steps]."""
    k = 10.0 ** (k_factor_db / 10.0)
    line_of_sight = jax.lax.complex(jnp.cos(los_phase), jnp.sin(los_phase))
    return math.sqrt(k / (k + 1.0)) * line_of_sight + math.sqrt(1.0 / (k + 1.0)) * diffuse


def correlated_normal(key: jax.Array, travelled_m, decorrelation_m: float) -> jax.Array:
    """Unit-variance Gaussian process along a path with correlation ``exp(-d / d_corr)``, float32 [steps].

    ``travelled_m`` is the distance moved at each step, float32 [steps] (entry 0
    unused); each step applies the AR(1) update with ``rho = exp(-travelled / d_corr)``.
    """
    draws = jax.random.normal(key, travelled_m.shape, jnp.float32)
    rho = jnp.exp(-travelled_m / decorrelation_m)
    return first_order_autoregression(draws[0], draws[1:], rho[1:])


def shannon_rate(bandwidth_hz, tx_power_w, gain, noise_density_w_per_hz):
    """Shannon rate ``R = B log2(1 + P g / (N0 B))`` [bit/s]; broadcasts over ``gain``."""
    snr = tx_power_w * gain / (noise_density_w_per_hz * bandwidth_hz)
    return bandwidth_hz * jnp.log2(1.0 + snr)



ENVIRONMENT_STREAM = 0xFFFFFFFF  # fold_in tag of a trajectory's environment; realizations use 0, 1, ...
CSI_ERROR_STREAM = 0xFFFFFFFE  # fold_in tag of a realization's channel-estimation error
PATH_LOSS_MODELS = ("free_space", "log_distance", "umi_los", "umi_nlos", "umi_mixed", "uma_los", "uma_nlos",
                    "uma_mixed")
FADING_MODELS = ("none", "rayleigh", "rician")
FADING_PROCESSES = ("gauss_markov", "sum_of_sinusoids", "block")


@dataclasses.dataclass(frozen=True)
class ChannelSpec:
    """Static description of the radio, the channel and the trajectory model (hashable, for ``jax.jit``).

    Units: Hz, W, W/Hz, m, s, dB. ``area_m`` is (x_min, x_max, y_min, y_max) and
    ``speed_range_mps`` is (v_min, v_max), used by the random waypoint model.
    """

    steps: int
    step_s: float
    bandwidth_hz: float
    tx_power_w: float
    noise_density_w_per_hz: float
    carrier_hz: float
    path_loss: str = "log_distance"
    path_loss_exponent: float = 3.0
    reference_m: float = 1.0
    bs_height_m: float = 10.0
    ut_height_m: float = 1.5
    shadowing_db: float = 0.0
    shadowing_decorrelation_m: float = 10.0
    los_decorrelation_m: float = 50.0
    fading: str = "rayleigh"
    fading_process: str = "gauss_markov"
    rician_k_db: float = 9.0
    sinusoids: int = 16
    block_steps: int = 10
    trajectory: str = "straight"
    area_m: tuple = ()
    speed_range_mps: tuple = ()
    pause_s: float = 0.0
    csi_delay_steps: int = 0
    csi_error_db: float = 0.0

    @property
    def random_environment(self) -> bool:
        """Whether each trajectory draws its own path, shadowing or LOS state."""
        return self.trajectory == "random_waypoint" or self.shadowing_db > 0 or self.path_loss.endswith("_mixed")

    @property
    def stale_csi(self) -> bool:
        return self.csi_delay_steps > 0 or self.csi_error_db > 0


def path_loss_db(spec: ChannelSpec, d2d_m, los_uniform=None):
    """Path loss [dB] at 2D distances ``d2d_m`` [...]; ``los_uniform`` [...] draws the LOS state of mixed models."""
    from jsplit import pathloss

    d3d = jnp.sqrt(d2d_m * d2d_m + (spec.bs_height_m - spec.ut_height_m) ** 2)
    fc, h_bs, h_ut = spec.carrier_hz, spec.bs_height_m, spec.ut_height_m
    if spec.path_loss == "free_space":
        return pathloss.free_space_db(d3d, fc)
    if spec.path_loss == "log_distance":
        return pathloss.log_distance_db(d3d, fc, spec.path_loss_exponent, spec.reference_m)
    if not spec.path_loss.endswith("_mixed"):
        return pathloss.MODELS[spec.path_loss](d2d_m, fc, h_bs, h_ut)

    scenario = spec.path_loss.removesuffix("_mixed")
    los = pathloss.MODELS[f"{scenario}_los"](d2d_m, fc, h_bs, h_ut)
    nlos = pathloss.MODELS[f"{scenario}_nlos"](d2d_m, fc, h_bs, h_ut)
    probability = (pathloss.umi_los_probability(d2d_m) if scenario == "umi"
                   else pathloss.uma_los_probability(d2d_m, h_ut))
    return pathloss.mixed_db(los, nlos, probability, los_uniform)


def large_scale_loss_db(spec: ChannelSpec, positions, base_stations, key):
    """Loss to the serving base station [dB] and the distance to it [m], each [steps].

    Each step serves the device from the base station with the least path loss
    plus shadowing. Shadowing and the LOS state of mixed models are Gaussian
    processes along the path, independent per base station; ``key`` draws them.
    """
    offset = positions[:, None, :] - base_stations[None, :, :]
    d2d = jnp.sqrt((offset * offset).sum(-1))  # [T, B]
    travelled = jnp.concatenate([jnp.zeros(1), jnp.linalg.norm(jnp.diff(positions, axis=0), axis=-1)])
    los_key, shadow_key = jax.random.split(key)
    stations = base_stations.shape[0]

    los_uniform = None
    if spec.path_loss.endswith("_mixed"):
        keys = jax.random.split(los_key, stations)
        normal = jax.vmap(correlated_normal, in_axes=(0, None, None), out_axes=1)(keys, travelled,
                                                                                 spec.los_decorrelation_m)
        los_uniform = jax.scipy.special.ndtr(normal)
    loss = path_loss_db(spec, d2d, los_uniform)
    if spec.shadowing_db > 0:
        keys = jax.random.split(shadow_key, stations)
        loss = loss + spec.shadowing_db * jax.vmap(correlated_normal, in_axes=(0, None, None), out_axes=1)(
            keys, travelled, spec.shadowing_decorrelation_m)

    serving = jnp.argmin(loss, axis=1)
    d3d = jnp.sqrt(d2d * d2d + (spec.bs_height_m - spec.ut_height_m) ** 2)
    return jnp.take_along_axis(loss, serving[:, None], 1)[:, 0], jnp.take_along_axis(d3d, serving[:, None], 1)[:, 0]


def motion(spec: ChannelSpec, positions):
    """Doppler [Hz], lag-one fading correlation J0(2 pi f_D dt) and speed [m/s] per step, each float32 [steps]."""
    from jsplit.trajectory import speeds

    speed = speeds(positions, spec.step_s)
    doppler = doppler_hz(speed, spec.carrier_hz)
    rho = bessel_j0(2.0 * math.pi * doppler * spec.step_s)
    return doppler.astype(jnp.float32), rho.astype(jnp.float32), speed


def fading_power(spec: ChannelSpec, key, rho, doppler, los_phase):
    """Small-scale fading power gain |h|^2 of one realization, float32 [steps], mean 1."""
    if spec.fading == "none":
        return jnp.ones(spec.steps, jnp.float32)
    if spec.fading_process == "gauss_markov":
        diffuse = gauss_markov(key, spec.steps, rho)
    elif spec.fading_process == "sum_of_sinusoids":
        diffuse = sum_of_sinusoids(key, doppler, spec.step_s, spec.sinusoids)
    else:
        diffuse = block_fading(key, spec.steps, spec.block_steps)
    h = diffuse
    if spec.fading == "rician":
        offset = jax.random.uniform(jax.random.fold_in(key, ENVIRONMENT_STREAM), (), jnp.float32, 0.0, 2 * math.pi)
        h = rician(diffuse, spec.rician_k_db, los_phase + offset)
    return jnp.real(h) ** 2 + jnp.imag(h) ** 2


def trajectory_inverse_rates(spec: ChannelSpec, arrays: dict, trajectory_key, realization_keys):
    """Inverse rates 1/R [s/bit] of one trajectory's realizations, and those the device decides on.

    Returns (true [R, steps], decision [R, steps]). The decision values equal the
    true ones unless the CSI is ``csi_delay_steps`` old or carries a log-normal
    SNR error of ``csi_error_db``.
    """
    if spec.random_environment:
        environment = jax.random.fold_in(trajectory_key, ENVIRONMENT_STREAM)
        path_key, loss_key = jax.random.split(environment)
        positions = arrays["positions"]
        if spec.trajectory == "random_waypoint":
            from jsplit.trajectory import random_waypoint

            positions = random_waypoint(path_key, spec.steps, spec.step_s, spec.area_m, spec.speed_range_mps,
                                        spec.pause_s)
        loss_db, distance = large_scale_loss_db(spec, positions, arrays["base_stations"], loss_key)
        gain = 10.0 ** (-loss_db / 10.0)
        doppler, rho, _ = motion(spec, positions)
        los_phase = 2.0 * math.pi * distance * spec.carrier_hz / SPEED_OF_LIGHT
    else:
        gain, rho, doppler, los_phase = (arrays[name] for name in ("path_gain", "rho", "doppler", "los_phase"))

    fading = jax.vmap(fading_power, in_axes=(None, 0, None, None, None))(spec, realization_keys, rho, doppler,
                                                                          los_phase)
    snr = spec.tx_power_w * gain * fading / (spec.noise_density_w_per_hz * spec.bandwidth_hz)
    inverse = 1.0 / (spec.bandwidth_hz * jnp.log2(1.0 + snr))
    if not spec.stale_csi:
        return inverse, inverse

    observed = snr
    if spec.csi_error_db > 0:
        error_keys = jax.vmap(lambda k: jax.random.fold_in(k, CSI_ERROR_STREAM))(realization_keys)
        error_db = spec.csi_error_db * jax.vmap(lambda k: jax.random.normal(k, (spec.steps,)))(error_keys)
        observed = observed * 10.0 ** (error_db / 10.0)
    if spec.csi_delay_steps > 0:
        delay = min(spec.csi_delay_steps, spec.steps - 1)
        observed = jnp.concatenate([jnp.repeat(observed[:, :1], delay, axis=1), observed[:, :-delay]], axis=1)
    return inverse, 1.0 / (spec.bandwidth_hz * jnp.log2(1.0 + observed))


@dataclasses.dataclass(frozen=True)
class LinkModel:
    """A channel ready for the Monte-Carlo engine.

    Attributes:
        spec: the static channel description.
        positions: float32 [steps, 2] path [m]; for random waypoint, the path of trajectory 0.
        base_stations: float32 [B, 2] base station positions [m].
        path_gain: large-scale gain per step, float64 [steps]; for a random
            environment, the mean over 64 sampled trajectories (for plots).
        rho: mean lag-one fading correlation over the path.
    """

    spec: ChannelSpec
    positions: np.ndarray
    base_stations: np.ndarray
    path_gain: np.ndarray
    rho: float
    arrays: dict = dataclasses.field(default_factory=dict, compare=False)

    @property
    def bandwidth_hz(self) -> float:
        return self.spec.bandwidth_hz

    @property
    def tx_power_w(self) -> float:
        return self.spec.tx_power_w

    @property
    def noise_density_w_per_hz(self) -> float:
        return self.spec.noise_density_w_per_hz

    @property
    def step_s(self) -> float:
        return self.spec.step_s

    def mean_snr_db(self) -> np.ndarray:
        """Mean SNR per step (fading averaged out) in dB, float64 [steps]."""
        return 10.0 * np.log10(self.tx_power_w * self.path_gain / (self.noise_density_w_per_hz * self.bandwidth_hz))


def make_link(spec: ChannelSpec, positions, base_stations, key=None) -> LinkModel:
    """Precompute what does not change between trajectories, and a mean path gain for plots."""
    positions = jnp.asarray(positions, jnp.float32)
    base_stations = jnp.asarray(base_stations, jnp.float32)
    doppler, rho, _ = motion(spec, positions)
    loss_db, distance = large_scale_loss_db(dataclasses.replace(spec, shadowing_db=0.0), positions, base_stations,
                                            jax.random.PRNGKey(0))
    arrays = {"positions": positions, "base_stations": base_stations, "path_gain": 10.0 ** (-loss_db / 10.0),
              "rho": rho, "doppler": doppler,
              "los_phase": 2.0 * math.pi * distance * spec.carrier_hz / SPEED_OF_LIGHT}
    path_gain = np.asarray(arrays["path_gain"], np.float64)

    if spec.random_environment:
        key = jax.random.PRNGKey(0) if key is None else key

        def sample(index):
            environment = jax.random.fold_in(jax.random.fold_in(key, index), ENVIRONMENT_STREAM)
            path_key, loss_key = jax.random.split(environment)
            path = positions
            if spec.trajectory == "random_waypoint":
                from jsplit.trajectory import random_waypoint

                path = random_waypoint(path_key, spec.steps, spec.step_s, spec.area_m, spec.speed_range_mps,
                                       spec.pause_s)
            return 10.0 ** (-large_scale_loss_db(spec, path, base_stations, loss_key)[0] / 10.0), path

        gains, paths = jax.jit(jax.vmap(sample))(jnp.arange(64, dtype=jnp.uint32))
        path_gain = np.asarray(gains, np.float64).mean(axis=0)
        positions = paths[0]
        rho = motion(spec, positions)[1]

    return LinkModel(spec=spec, positions=np.asarray(positions), base_stations=np.asarray(base_stations),
                     path_gain=path_gain, rho=float(np.mean(np.asarray(rho)[1:])) if spec.steps > 1 else 1.0,
                     arrays=arrays)


def simple_link(path_gain, rho: float, bandwidth_hz: float, tx_power_w: float, noise_density_w_per_hz: float,
                step_s: float) -> LinkModel:
    """Build a link from a given path gain per step and a constant fading correlation (for tests)."""
    steps = len(path_gain)
    spec = ChannelSpec(steps=steps, step_s=step_s, bandwidth_hz=bandwidth_hz, tx_power_w=tx_power_w,
                       noise_density_w_per_hz=noise_density_w_per_hz, carrier_hz=2.4e9)
    arrays = {"positions": jnp.zeros((steps, 2)), "base_stations": jnp.zeros((1, 2)),
              "path_gain": jnp.asarray(path_gain, jnp.float32), "rho": jnp.full(steps, rho, jnp.float32),
              "doppler": jnp.zeros(steps, jnp.float32), "los_phase": jnp.zeros(steps, jnp.float32)}
    return LinkModel(spec=spec, positions=np.zeros((steps, 2)), base_stations=np.zeros((1, 2)),
                     path_gain=np.asarray(path_gain, np.float64), rho=rho, arrays=arrays)


def trajectory_positions(trajectory_cfg, steps: int) -> np.ndarray:
    """Positions [steps, 2] in metres of a deterministic trajectory; zeros for random waypoint (drawn per trajectory)."""
    from jsplit import trajectory

    name, step_s = trajectory_cfg.name, trajectory_cfg.step_s
    if name == "straight":
        return trajectory.straight(steps, step_s, trajectory_cfg.speed_mps, trajectory_cfg.closest_m)
    if name == "polyline":
        return trajectory.polyline([list(p) for p in trajectory_cfg.waypoints_m], trajectory_cfg.speed_mps, steps,
                                   step_s)
    if name == "circle":
        return trajectory.circle(list(trajectory_cfg.center_m), trajectory_cfg.radius_m, trajectory_cfg.speed_mps,
                                 steps, step_s)
    if name == "trace":
        # NOTE: a z column of the trace is read but not used; heights come from channel.ut_height_m.
        return trajectory.load_trace(trajectory_cfg.path, steps, step_s)[:, :2]
    return np.zeros((steps, 2))


def channel_spec(cfg) -> ChannelSpec:
    """Build the ChannelSpec of a validated configuration (keys as in conf/)."""
    channel, trajectory_cfg = cfg.channel, cfg.trajectory
    random_waypoint = trajectory_cfg.name == "random_waypoint"
    return ChannelSpec(
        steps=int(cfg.mc.steps), step_s=float(trajectory_cfg.step_s), bandwidth_hz=float(cfg.bandwidth),
        tx_power_w=dbm_to_w(channel.tx_power_dbm),
        noise_density_w_per_hz=noise_density_w_per_hz(channel.noise_density_dbm_per_hz, channel.noise_figure_db),
        carrier_hz=float(channel.carrier_hz), path_loss=channel.path_loss,
        path_loss_exponent=float(channel.path_loss_exponent), reference_m=float(channel.reference_m),
        bs_height_m=float(channel.bs_height_m), ut_height_m=float(channel.ut_height_m),
        shadowing_db=float(channel.shadowing_db), shadowing_decorrelation_m=float(channel.shadowing_decorrelation_m),
        los_decorrelation_m=float(channel.los_decorrelation_m), fading=channel.fading,
        fading_process=channel.fading_process, rician_k_db=float(channel.rician_k_db),
        sinusoids=int(channel.sinusoids), block_steps=int(channel.block_steps), trajectory=trajectory_cfg.name,
        area_m=tuple(float(v) for v in trajectory_cfg.area_m) if random_waypoint else (),
        speed_range_mps=tuple(float(v) for v in trajectory_cfg.speed_range_mps) if random_waypoint else (),
        pause_s=float(trajectory_cfg.pause_s) if random_waypoint else 0.0,
        csi_delay_steps=int(cfg.csi.delay_steps), csi_error_db=float(cfg.csi.error_db))


def distance_range_m(spec: ChannelSpec, positions: np.ndarray, base_stations: np.ndarray) -> tuple[float, float]:
    """Smallest and largest 2D distance from the path (or the random waypoint area) to any base station [m]."""
    if spec.trajectory == "random_waypoint":
        x_min, x_max, y_min, y_max = spec.area_m
        nearest = [np.hypot(np.clip(bx, x_min, x_max) - bx, np.clip(by, y_min, y_max) - by) for bx, by in base_stations]
        corners = [(x, y) for x in (x_min, x_max) for y in (y_min, y_max)]
        farthest = [max(np.hypot(x - bx, y - by) for x, y in corners) for bx, by in base_stations]
        return float(min(nearest)), float(max(farthest))
    d2d = np.hypot(positions[:, None, 0] - base_stations[None, :, 0], positions[:, None, 1] - base_stations[None, :, 1])
    return float(d2d.min()), float(d2d.max())


def build_link(cfg, key=None) -> LinkModel:
    """Build the LinkModel of a validated configuration; raise ValueError when the path leaves the model's range."""
    from jsplit import pathloss

    spec = channel_spec(cfg)
    positions = trajectory_positions(cfg.trajectory, spec.steps)
    base_stations = np.asarray([list(b) for b in cfg.channel.base_stations_m], np.float64)

    low, high = distance_range_m(spec, positions, base_stations)
    model = spec.path_loss.replace("_mixed", "_los")
    try:
        pathloss.check_validity(model, low, high, spec.carrier_hz, spec.bs_height_m, spec.ut_height_m)
    except ValueError as error:
        raise ValueError(f"channel.path_loss={spec.path_loss} with trajectory={cfg.trajectory.name}: {error}") from None
    return make_link(spec, positions, base_stations, key)
