"""Per-candidate device cost: computation, memory access and the bits to send.

For a candidate k running layers 1..l on the device:

    E_comp_k = sum_{i<=l} (MACs_i * (e_mult + e_add) + biases_i * e_add)
    E_mem_k  = sum_{i<=l} (weights_fetched_i * e_weight + (in_i + out_i) * e_act)
    c_k      = E_comp_k + E_mem_k                       [J]
    a_k      = P_tx * bits_k                            [J * bit/s]

so that the energy at rate R is ``E_k = c_k + a_k / R``. ``MACs_i`` counts
only the surviving (non-zero) kernel weights. Weights are read from SRAM when
all device-side weights fit in ``sram_bytes`` and from DRAM otherwise; every
activation element is one 32-bit SRAM access. Weights and arithmetic are
float32 here.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jsplit.compress import FLOAT_BITS, CandidateGrid
from jsplit.model import SplitNetwork

PICO = 1e-12
WORD_BYTES = 4  # float32 weights and activations


@dataclasses.dataclass(frozen=True)
class EnergyProfile:
    """Energy per operation (J) and on-chip memory of a device.

    Attributes:
        mac_j: one float32 multiply plus one add.
        add_j: one float32 add.
        sram_read_j, dram_read_j: one 32-bit read.
        sram_bytes: on-chip SRAM available for weights.
        macs_per_s: local compute throughput, for the latency.
        source: where the figures come from.
    """

    mac_j: float
    add_j: float
    sram_read_j: float
    dram_read_j: float
    sram_bytes: float
    macs_per_s: float
    source: str

    @classmethod
    def from_config(cls, cfg) -> "EnergyProfile":
        return cls(mac_j=(cfg.float32_mult_pj + cfg.float32_add_pj) * PICO, add_j=cfg.float32_add_pj * PICO,
                   sram_read_j=cfg.sram_read_32bit_pj * PICO, dram_read_j=cfg.dram_read_32bit_pj * PICO,
                   sram_bytes=float(cfg.sram_bytes), macs_per_s=float(cfg.macs_per_s), source=str(cfg.source))


@dataclasses.dataclass(frozen=True)
class CandidateTable:
    """Everything known about each candidate before the channel is drawn; arrays of length K.

    Attributes:
        sparsity, split, activation_bits, model_index: as in CandidateGrid.
        macs: multiply-accumulates on the device per inference.
        weights_fetched: weights and biases read on the device per inference.
        weights_in_sram: whether the device-side weights fit in SRAM.
        activation_accesses: activation elements read and written on the device.
        bits_sent: bits transmitted per inference.
        energy_comp_j, energy_mem_j: E_comp_k and E_mem_k [J].
        energy_local_j: c_k = E_comp_k + E_mem_k [J].
        tx_coeff: a_k = P_tx * bits_k [J bit/s]; E_tx = a_k / R.
        local_latency_s: macs / throughput [s].
        loss: test cross-entropy [nats]. accuracy: test accuracy, fraction.
        uncompressed: dense float32 weights and float32 (or raw, or label) payload.
    """

    model_index: np.ndarray
    sparsity: np.ndarray
    split: np.ndarray
    activation_bits: np.ndarray
    macs: np.ndarray
    weights_fetched: np.ndarray
    weights_in_sram: np.ndarray
    activation_accesses: np.ndarray
    bits_sent: np.ndarray
    energy_comp_j: np.ndarray
    energy_mem_j: np.ndarray
    energy_local_j: np.ndarray
    tx_coeff: np.ndarray
    local_latency_s: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray
    uncompressed: np.ndarray

    def __len__(self) -> int:
        return len(self.split)

    def rows(self) -> list[dict]:
        """Return one dict per candidate, for CSV and JSON output."""
        columns = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return [{name: values[k].item() for name, values in columns.items()} for k in range(len(self))]


def surviving_weights(net: SplitNetwork, params) -> np.ndarray:
    """Non-zero kernel weights per layer, int64 [L]."""
    tree = params["params"]
    return np.asarray([int(np.count_nonzero(np.asarray(tree[layer.name]["kernel"]))) if layer.weighted else 0
                       for layer in net.layers], np.int64)


def build_table(net: SplitNetwork, models: list[dict], grid: CandidateGrid, loss: np.ndarray, accuracy: np.ndarray,
                energy: EnergyProfile, tx_power_w: float) -> CandidateTable:
    """Compute the cost of every candidate in ``grid``.

    Args:
        models: parameter pytrees, one per compression level (index = model_index).
        loss, accuracy: float64 [K] from ``compress.evaluate_candidates``.
        tx_power_w: transmit power P_tx [W].
    """
    survivors = np.stack([surviving_weights(net, params) for params in models])  # [levels, L]
    biases = np.asarray([layer.bias_count for layer in net.layers], np.int64)
    # One bias add per output element of a weighted layer. NOTE: the comparisons of max pooling are not counted.
    output_adds = np.asarray([layer.output_size if layer.weighted else 0 for layer in net.layers], np.int64)
    uses = np.asarray([layer.uses_per_weight for layer in net.layers], np.int64)
    act_io = np.asarray([layer.input_size + layer.output_size for layer in net.layers], np.int64)

    on_device = np.arange(net.num_layers)[None, :] < grid.split[:, None]  # [K, L]
    macs = (on_device * survivors[grid.model_index] * uses).sum(axis=1)
    bias_adds = (on_device * output_adds).sum(axis=1)
    weights_fetched = (on_device * (survivors[grid.model_index] + biases)).sum(axis=1)
    activation_accesses = (on_device * act_io).sum(axis=1)

    weights_in_sram = weights_fetched * WORD_BYTES <= energy.sram_bytes
    weight_read_j = np.where(weights_in_sram, energy.sram_read_j, energy.dram_read_j)
    energy_comp = macs * energy.mac_j + bias_adds * energy.add_j
    energy_mem = weights_fetched * weight_read_j + activation_accesses * energy.sram_read_j

    # Split L sends one class label, not the logits.
    elements_sent = np.where(grid.split == net.num_layers, 1, np.asarray(net.boundary_sizes, np.int64)[grid.split])
    bits_sent = elements_sent * grid.activation_bits
    split_at_edge = (grid.split == 0) | (grid.split == net.num_layers)
    uncompressed = (grid.model_index == 0) & (split_at_edge | (grid.activation_bits == FLOAT_BITS))

    return CandidateTable(
        model_index=grid.model_index, sparsity=grid.sparsity, split=grid.split, activation_bits=grid.activation_bits,
        macs=macs, weights_fetched=weights_fetched, weights_in_sram=weights_in_sram,
        activation_accesses=activation_accesses, bits_sent=bits_sent,
        energy_comp_j=energy_comp, energy_mem_j=energy_mem, energy_local_j=energy_comp + energy_mem,
        tx_coeff=tx_power_w * bits_sent.astype(np.float64), local_latency_s=macs / energy.macs_per_s,
        loss=np.asarray(loss, np.float64), accuracy=np.asarray(accuracy, np.float64), uncompressed=uncompressed)


def dense_macs(net: SplitNetwork, params) -> int:
    """MACs of one full forward pass counting surviving weights only."""
    return int((surviving_weights(net, params) * np.asarray([layer.uses_per_weight for layer in net.layers])).sum())

