"""Per-candidate device cost: computation, memory access and the bits to send.

For a candidate k running layers 1..l on the device at weight precision b:

    E_comp_k = sum_{i<=l} (MACs_i * e_mac(b) + biases_i * e_add(b))
    E_mem_k  = sum_{i<=l} (weights_i * e_read * b / 32 + biases_i * e_read
                           + (in_i + out_i) * e_sram * b_act / 32)
    c_k      = E_comp_k + E_mem_k                       [J]
    a_k      = P_tx * bits_k                            [J * bit/s]

so that the energy at rate R is ``E_k = c_k + a_k / R``. ``MACs_i`` counts
only the surviving (non-zero) kernel weights, and ``in_i``, ``out_i`` only the
channels that structured pruning left alive. At b = 32 the arithmetic is
float32 (``e_mac`` = float multiply + float add). At b < 32 it is integer: a
b-bit multiply accumulated in a 32-bit integer adder, with 32-bit biases, and
activations of b_act = b bits. Weights are packed, so a read of b bits costs
b/32 of a 32-bit read; they come from SRAM when all device-side weights and
biases fit in ``sram_bytes`` and from DRAM otherwise. Every activation access
is an SRAM access.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from jsplit.compress import FLOAT_BITS, CandidateGrid, alive_channels
from jsplit.model import SplitNetwork
from jsplit.train import seed_slice

PICO = 1e-12
WORD_BITS = 32  # one memory access reads 32 bits
ACCUMULATOR_BITS = 32  # integer products are summed, and biases kept, at 32 bits


@dataclasses.dataclass(frozen=True)
class EnergyProfile:
    """Energy per operation (J) and on-chip memory of a device.

    Attributes:
        float_mult_j, float_add_j: one float32 multiply, one float32 add.
        int_mult_j: one integer multiply per bit-width (4, 8, 16, 32).
        int32_add_j: one 32-bit integer add (the accumulator).
        sram_read_j, dram_read_j: one 32-bit read.
        sram_bytes: on-chip SRAM available for weights.
        macs_per_s: local compute throughput, for the latency.
        source: where the figures come from.
    """

    float_mult_j: float
    float_add_j: float
    int_mult_j: dict
    int32_add_j: float
    sram_read_j: float
    dram_read_j: float
    sram_bytes: float
    macs_per_s: float
    source: str

    @classmethod
    def from_config(cls, cfg) -> "EnergyProfile":
        int_mult = {bits: cfg[f"int{bits}_mult_pj"] * PICO for bits in (4, 8, 16, 32)}
        return cls(float_mult_j=cfg.float32_mult_pj * PICO, float_add_j=cfg.float32_add_pj * PICO,
                   int_mult_j=int_mult, int32_add_j=cfg.int32_add_pj * PICO,
                   sram_read_j=cfg.sram_read_32bit_pj * PICO, dram_read_j=cfg.dram_read_32bit_pj * PICO,
                   sram_bytes=float(cfg.sram_bytes), macs_per_s=float(cfg.macs_per_s), source=str(cfg.source))

    def mac_j(self, bits: np.ndarray) -> np.ndarray:
        """Return the energy of one multiply-accumulate at weight precision ``bits`` [K] (32: float32).

        Raises:
            ValueError: an integer width below 32 without a multiply energy in the profile.
        """
        missing = sorted({int(b) for b in np.ravel(bits) if b < FLOAT_BITS and int(b) not in self.int_mult_j})
        if missing:
            raise ValueError(f"no integer multiply energy for {missing} bits; the profile has "
                             f"{sorted(self.int_mult_j)}, so use those weight precisions or add int<N>_mult_pj")
        integer = np.asarray([self.int_mult_j.get(int(b), 0.0) for b in np.ravel(bits)]).reshape(np.shape(bits))
        return np.where(np.asarray(bits) >= FLOAT_BITS, self.float_mult_j + self.float_add_j,
                        integer + self.int32_add_j)

    def add_j(self, bits: np.ndarray) -> np.ndarray:
        """Return the energy of one bias add at weight precision ``bits`` [K]."""
        return np.where(np.asarray(bits) >= FLOAT_BITS, self.float_add_j, self.int32_add_j)


@dataclasses.dataclass(frozen=True)
class CandidateTable:
    """Everything known about each candidate before the channel is drawn; arrays of length K.

    Attributes:
        model_index, sparsity, structured, weight_bits, split, activation_bits: as in CandidateGrid.
        macs: multiply-accumulates on the device per inference (mean over seeds).
        weights_fetched: weights and biases read on the device per inference.
        weight_bytes: storage of those weights at their precision and of the 32-bit biases.
        weights_in_sram: whether the device-side weights fit in SRAM.
        activation_accesses: activation elements read and written on the device.
        elements_sent: activation elements transmitted per inference.
        bits_sent: bits transmitted per inference.
        energy_comp_j, energy_mem_j: E_comp_k and E_mem_k [J].
        energy_local_j: c_k = E_comp_k + E_mem_k [J].
        tx_coeff: a_k = P_tx * bits_k [J bit/s]; E_tx = a_k / R.
        local_latency_s: macs / throughput [s].
        loss: test cross-entropy [nats], mean over seeds.
        accuracy: test accuracy, fraction, mean over seeds.
        accuracy_std: sample standard deviation of the test accuracy over seeds (0 for one seed).
        uncompressed: dense float32 weights and float32 (or raw, or label) payload.
    """

    model_index: np.ndarray
    sparsity: np.ndarray
    structured: np.ndarray
    weight_bits: np.ndarray
    split: np.ndarray
    activation_bits: np.ndarray
    macs: np.ndarray
    weights_fetched: np.ndarray
    weight_bytes: np.ndarray
    weights_in_sram: np.ndarray
    activation_accesses: np.ndarray
    elements_sent: np.ndarray
    bits_sent: np.ndarray
    energy_comp_j: np.ndarray
    energy_mem_j: np.ndarray
    energy_local_j: np.ndarray
    tx_coeff: np.ndarray
    local_latency_s: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray
    accuracy_std: np.ndarray
    uncompressed: np.ndarray

    def __len__(self) -> int:
        return len(self.split)

    def rows(self) -> list[dict]:
        """Return one dict per candidate, for CSV and JSON output."""
        columns = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return [{name: values[k].item() for name, values in columns.items()} for k in range(len(self))]


def seed_std(values: np.ndarray) -> np.ndarray:
    """Sample standard deviation (ddof 1) over the last axis, the seeds; 0 for a single seed."""
    values = np.asarray(values, np.float64)
    if values.shape[-1] < 2:
        return np.zeros(values.shape[:-1])
    return values.std(axis=-1, ddof=1)


def surviving_weights(net: SplitNetwork, params) -> np.ndarray:
    """Non-zero kernel weights per layer, int64 [L]."""
    tree = params["params"]
    return np.asarray([int(np.count_nonzero(np.asarray(tree[layer.name]["kernel"]))) if layer.weighted else 0
                       for layer in net.layers], np.int64)


def _per_seed(function, params, stacked: bool) -> np.ndarray:
    """``function(params)`` averaged over the seed axis when ``stacked``."""
    if not stacked:
        return np.asarray(function(params), np.float64)
    seeds = len(jax.tree.leaves(params)[0])
    return np.mean([function(seed_slice(params, s)) for s in range(seeds)], axis=0)


def build_table(net: SplitNetwork, models: list[dict], grid: CandidateGrid, loss: np.ndarray, accuracy: np.ndarray,
                energy: EnergyProfile, tx_power_w: float, stacked: bool = False) -> CandidateTable:
    """Compute the cost of every candidate in ``grid``.

    Args:
        models: parameter pytrees, one per compression level (index =
            model_index), stacked over seeds when ``stacked``; counts are
            averaged over seeds.
        loss, accuracy: float64 [K] or [K, S] from ``compress.evaluate_candidates``;
            the table stores the mean over seeds and the accuracy's standard deviation.
        tx_power_w: transmit power P_tx [W].
    """
    survivors = np.stack([_per_seed(lambda p: surviving_weights(net, p), params, stacked) for params in models])
    alive = np.stack([_per_seed(lambda p: alive_channels(net, p), params, stacked) for params in models])  # [M, L+1]
    channels = np.asarray([net.input_size] + [layer.output_channels for layer in net.layers], np.float64)
    boundary = np.asarray(net.boundary_sizes, np.float64) * alive / channels  # live elements [M, L+1]

    biases = np.asarray([layer.bias_count for layer in net.layers], np.float64)
    live_biases = biases * np.where([layer.weighted for layer in net.layers], alive[:, 1:] / channels[1:], 0.0)
    uses = np.asarray([layer.uses_per_weight for layer in net.layers], np.float64)

    m, bits = grid.model_index, grid.weight_bits
    on_device = np.arange(net.num_layers)[None, :] < grid.split[:, None]  # [K, L]
    weighted = np.asarray([layer.weighted for layer in net.layers])
    macs = (on_device * survivors[m] * uses).sum(axis=1)
    # One bias add per live output element of a weighted layer. NOTE: the comparisons of max pooling are not counted.
    bias_adds = (on_device * weighted * boundary[m, 1:]).sum(axis=1)
    kernel_fetched = (on_device * survivors[m]).sum(axis=1)
    bias_fetched = (on_device * live_biases[m]).sum(axis=1)
    weights_fetched = kernel_fetched + bias_fetched
    activation_accesses = (on_device * (boundary[m, :-1] + boundary[m, 1:])).sum(axis=1)

    activation_word = np.minimum(bits, WORD_BITS) / WORD_BITS
    weight_bytes = (kernel_fetched * bits + bias_fetched * ACCUMULATOR_BITS) / 8
    weights_in_sram = weight_bytes <= energy.sram_bytes
    weight_read_j = np.where(weights_in_sram, energy.sram_read_j, energy.dram_read_j)
    energy_comp = macs * energy.mac_j(bits) + bias_adds * energy.add_j(bits)
    energy_mem = ((kernel_fetched * bits / WORD_BITS + bias_fetched) * weight_read_j
                  + activation_accesses * activation_word * energy.sram_read_j)

    # Split L sends one class label, not the logits.
    elements_sent = np.where(grid.split == net.num_layers, 1.0, boundary[m, grid.split])
    bits_sent = elements_sent * grid.activation_bits
    split_at_edge = (grid.split == 0) | (grid.split == net.num_layers)
    uncompressed = (grid.model_index == 0) & (split_at_edge | (grid.activation_bits == FLOAT_BITS))

    loss, accuracy = np.asarray(loss, np.float64), np.asarray(accuracy, np.float64)
    if loss.ndim == 1:
        loss, accuracy = loss[:, None], accuracy[:, None]
    return CandidateTable(
        model_index=grid.model_index, sparsity=grid.sparsity, structured=grid.structured, weight_bits=bits,
        split=grid.split, activation_bits=grid.activation_bits, macs=macs, weights_fetched=weights_fetched,
        weight_bytes=weight_bytes, weights_in_sram=weights_in_sram, activation_accesses=activation_accesses, elements_sent=elements_sent,
        bits_sent=bits_sent, energy_comp_j=energy_comp, energy_mem_j=energy_mem,
        energy_local_j=energy_comp + energy_mem, tx_coeff=tx_power_w * bits_sent, local_latency_s=macs / energy.macs_per_s,
        loss=loss.mean(axis=1), accuracy=accuracy.mean(axis=1), accuracy_std=seed_std(accuracy),
        uncompressed=uncompressed)


def dense_macs(net: SplitNetwork, params) -> int:
    """MACs of one full forward pass counting surviving weights only."""
    return int((surviving_weights(net, params) * np.asarray([layer.uses_per_weight for layer in net.layers])).sum())
