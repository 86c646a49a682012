import jax
import numpy as np
import pytest

from jsplit.compress import candidate_grid, magnitude_mask
from jsplit.profile import EnergyProfile, build_table

HOROWITZ = EnergyProfile(mac_j=(3.7 + 0.9) * 1e-12, add_j=0.9e-12, sram_read_j=5e-12, dram_read_j=640e-12,
                         sram_bytes=262144, macs_per_s=1e9, source="Horowitz 45 nm")


@pytest.fixture(scope="module")
def table(lenet):
    dense = lenet.init(jax.random.PRNGKey(0))
    sparse = jax.tree.map(lambda p, m: p * m, dense, magnitude_mask(dense, 0.95, "layer"))
    grid = candidate_grid([0.0, 0.95], 3, [32, 8])
    k = len(grid)
    return build_table(lenet, [dense, sparse], grid, np.zeros(k), np.ones(k), HOROWITZ, tx_power_w=0.2)


def find(table, model, split, bits):
    return int(np.flatnonzero((table.model_index == model) & (table.split == split)
                              & (table.activation_bits == bits))[0])


def test_split_zero_sends_raw_image(table):
    k = find(table, 0, 0, 8)

    assert table.bits_sent[k] == 784 * 8
    assert table.energy_local_j[k] == 0.0
    assert table.tx_coeff[k] == pytest.approx(0.2 * 6272)
    assert table.uncompressed[k]


def test_last_split_sends_label(table):
    k = find(table, 0, 3, 4)

    assert table.bits_sent[k] == 4
    assert table.macs[k] == 266_200
    assert table.uncompressed[k]


def test_dense_first_layer_energy_by_hand(table):
    k = find(table, 0, 1, 32)
    weights = 784 * 300 + 300  # kernel + bias, 940 kB > 256 KiB of SRAM: read from DRAM
    expected_comp = 784 * 300 * 4.6e-12 + 300 * 0.9e-12
    expected_mem = weights * 640e-12 + (784 + 300) * 5e-12

    assert not table.weights_in_sram[k]
    assert table.energy_comp_j[k] == pytest.approx(expected_comp, rel=1e-9)
    assert table.energy_mem_j[k] == pytest.approx(expected_mem, rel=1e-9)
    assert table.bits_sent[k] == 300 * 32
    assert table.local_latency_s[k] == pytest.approx(784 * 300 / 1e9)


def test_pruned_model_counts_surviving_weights_in_sram(table):
    k = find(table, 1, 3, 4)
    survivors = round(0.05 * 784 * 300) + round(0.05 * 300 * 100) + round(0.05 * 100 * 10)

    assert table.macs[k] == pytest.approx(survivors, abs=3)
    assert table.weights_in_sram[k]
    assert table.energy_mem_j[k] < 0.01 * table.energy_mem_j[find(table, 0, 3, 4)]


def test_quantized_payload_is_not_uncompressed(table):
    assert not table.uncompressed[find(table, 0, 2, 8)]
    assert table.uncompressed[find(table, 0, 2, 32)]
    assert not table.uncompressed[find(table, 1, 2, 32)]
