"""Trajectory, path loss, fading and Shannon rate of the uplink.

The channel power gain at step t is ``g(t) = PL(d(t))^-1 * f(t)``: the
log-distance path gain at the device's distance times the small-scale fading
power gain. Fading is Rayleigh (``f = |h|^2`` with ``h ~ CN(0, 1)``, so
``E[f] = 1``) and correlated in time by a first-order Gauss-Markov process

    h_t = rho h_{t-1} + sqrt(1 - rho^2) w_t,   w_t ~ CN(0, 1),
    rho = J0(2 pi f_D dt),  f_D = v f_c / c            (Jakes' autocorrelation)

which keeps the marginal CN(0, 1) and gives lag-one correlation rho.
Every trajectory draws its own fading from ``fold_in(key, trajectory_index)``,
so results do not depend on how trajectories are chunked.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

SPEED_OF_LIGHT = 299_792_458.0  # m/s


def dbm_to_w(dbm: float) -> float:
    return 10.0 ** ((dbm - 30.0) / 10.0)


def noise_density_w_per_hz(density_dbm_per_hz: float, noise_figure_db: float) -> float:
    """Receiver noise power spectral density N0 [W/Hz], the noise figure included."""
    return dbm_to_w(density_dbm_per_hz + noise_figure_db)


def free_space_path_loss_db(distance_m, carrier_hz: float):
    """Friis free-space loss ``20 log10(4 pi d f_c / c)`` in dB; distance in metres."""
    return 20.0 * np.log10(4.0 * math.pi * np.asarray(distance_m, np.float64) * carrier_hz / SPEED_OF_LIGHT)


def log_distance_path_loss_db(distance_m, carrier_hz: float, exponent: float, reference_m: float):
    """Log-distance path loss in dB: free space up to ``reference_m``, then ``10 n log10(d / d0)``.

    ``PL(d) = FSPL(d0) + 10 n log10(d / d0)``; distances below d0 are clamped to d0.
    """
    distance = np.maximum(np.asarray(distance_m, np.float64), reference_m)
    return free_space_path_loss_db(reference_m, carrier_hz) + 10.0 * exponent * np.log10(distance / reference_m)


def doppler_hz(speed_mps: float, carrier_hz: float) -> float:
    """Maximum Doppler shift f_D = v f_c / c [Hz]."""
    return speed_mps * carrier_hz / SPEED_OF_LIGHT


def fading_correlation(speed_mps: float, carrier_hz: float, step_s: float) -> float:
    """Lag-one correlation of the complex fading, rho = J0(2 pi f_D dt) (Clarke/Jakes)."""
    return float(scipy.special.j0(2.0 * math.pi * doppler_hz(speed_mps, carrier_hz) * step_s))


def straight_pass_distances(steps: int, step_s: float, speed_mps: float, closest_m: float) -> np.ndarray:
    """Distances [m] to a base station at the origin along a straight pass, float64 [steps].

    The device moves along the line y = closest_m at ``speed_mps`` and reaches
    x = 0 (the closest point) halfway through the run.
    """
    time_s = (np.arange(steps) - (steps - 1) / 2.0) * step_s
    return np.hypot(speed_mps * time_s, closest_m)


def rayleigh_gauss_markov(key: jax.Array, steps: int, rho) -> jax.Array:
    """Rayleigh fading power gains |h_t|^2 of one trajectory, float32 [steps], mean 1.

    ``h_0 ~ CN(0, 1)`` starts the process in its stationary law, so every step
    has the same exponential marginal.
    """
    draws = jax.random.normal(key, (steps, 2), jnp.float32) * jnp.sqrt(0.5)
    innovations = jax.lax.complex(draws[:, 0], draws[:, 1])
    innovation_scale = jnp.sqrt(1.0 - rho * rho)

    def step(h, w):
        h = rho * h + innovation_scale * w
        return h, h

    _, h = jax.lax.scan(step, innovations[0], innovations[1:])
    h = jnp.concatenate([innovations[:1], h])
    return jnp.real(h) ** 2 + jnp.imag(h) ** 2


def shannon_rate(bandwidth_hz, tx_power_w, gain, noise_density_w_per_hz):
    """Shannon rate ``R = B log2(1 + P g / (N0 B))`` [bit/s]; broadcasts over ``gain``."""
    snr = tx_power_w * gain / (noise_density_w_per_hz * bandwidth_hz)
    return bandwidth_hz * jnp.log2(1.0 + snr)


@dataclasses.dataclass(frozen=True)
class LinkModel:
    """Everything the Monte-Carlo needs to draw the rate of one trajectory.

    Attributes:
        path_gain: linear mean channel gain per step, float32 [steps].
        rho: lag-one fading correlation.
        bandwidth_hz, tx_power_w, noise_density_w_per_hz: radio settings.
        step_s: duration of one step [s].
    """

    path_gain: np.ndarray
    rho: float
    bandwidth_hz: float
    tx_power_w: float
    noise_density_w_per_hz: float
    step_s: float

    def mean_snr_db(self) -> np.ndarray:
        """Mean SNR per step (fading averaged out) in dB, float64 [steps]."""
        return 10.0 * np.log10(self.tx_power_w * self.path_gain / (self.noise_density_w_per_hz * self.bandwidth_hz))


def build_link(cfg) -> LinkModel:
    """Build the LinkModel from a validated configuration (keys as in conf/config.yaml)."""
    channel, trajectory = cfg.channel, cfg.trajectory
    distances = straight_pass_distances(cfg.mc.steps, trajectory.step_s, trajectory.speed_mps, trajectory.closest_m)
    loss_db = log_distance_path_loss_db(distances, channel.carrier_hz, channel.path_loss_exponent, channel.reference_m)
    return LinkModel(
        path_gain=(10.0 ** (-loss_db / 10.0)).astype(np.float64),
        rho=fading_correlation(trajectory.speed_mps, channel.carrier_hz, trajectory.step_s),
        bandwidth_hz=float(cfg.bandwidth),
        tx_power_w=dbm_to_w(channel.tx_power_dbm),
        noise_density_w_per_hz=noise_density_w_per_hz(channel.noise_density_dbm_per_hz, channel.noise_figure_db),
        step_s=float(trajectory.step_s),
    )
