import jax
import numpy as np
import pytest

from jsplit.compress import candidate_grid, magnitude_mask
from jsplit.profile import EnergyProfile, build_table

HOROWITZ = EnergyProfile(float_mult_j=3.7e-12, float_add_j=0.9e-12,
                         int_mult_j={4: 0.05e-12, 8: 0.2e-12, 16: 0.8e-12, 32: 3.1e-12}, int32_add_j=0.1e-12,
                         sram_read_j=5e-12, dram_read_j=640e-12, sram_bytes=262144, macs_per_s=1e9,
                         source="Horowitz 45 nm")


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


def test_int8_first_layer_energy_by_hand(lenet):
    from jsplit.compress import Level
    from jsplit.quantize import quantize_weights

    dense = lenet.init(jax.random.PRNGKey(0))
    int8 = quantize_weights(dense, 8)
    grid = candidate_grid([Level(0.0, False, 32), Level(0.0, False, 8)], 3, [8])
    table = build_table(lenet, [dense, int8], grid, np.zeros(len(grid)), np.ones(len(grid)), HOROWITZ, 0.2)
    k = find(table, 1, 1, 8)
    kernel = int(np.count_nonzero(np.asarray(int8["params"]["dense1"]["kernel"])))  # a few weights round to zero

    # Each MAC is an 8-bit multiply and a 32-bit accumulate, and bias adds are 32-bit. Packed 8-bit weights
    # and 32-bit biases take 235.5 kB, so they fit the 256 KiB SRAM. Activation accesses are 8 bits wide.
    assert table.weight_bits[k] == 8
    assert table.energy_comp_j[k] == pytest.approx(kernel * (0.2e-12 + 0.1e-12) + 300 * 0.1e-12, rel=1e-9)
    assert table.weights_in_sram[k]
    expected_mem = (kernel * 8 / 32 + 300) * 5e-12 + (784 + 300) * 8 / 32 * 5e-12
    assert table.energy_mem_j[k] == pytest.approx(expected_mem, rel=1e-9)
    # float32 weights of the same layer (940 kB) come from DRAM: the integer model is about 500 times cheaper
    assert table.energy_local_j[find(table, 0, 1, 8)] / table.energy_local_j[k] > 400


def test_structured_pruning_shrinks_what_is_sent(lenet):
    from jsplit.compress import Level, structured_mask

    dense = lenet.init(jax.random.PRNGKey(0))
    thin = jax.tree.map(lambda p, m: p * m, dense, structured_mask(lenet, dense, 0.5))
    grid = candidate_grid([Level(0.0, False, 32), Level(0.5, True, 32)], 3, [32])
    table = build_table(lenet, [dense, thin], grid, np.zeros(len(grid)), np.ones(len(grid)), HOROWITZ, 0.2)

    assert table.elements_sent[find(table, 1, 1, 32)] == 150
    assert table.bits_sent[find(table, 1, 2, 32)] == 50 * 32
    # layer 2 reads 150 live inputs and writes 50 live outputs: 150 * 50 weights, 50 biases
    assert table.macs[find(table, 1, 2, 32)] == 784 * 150 + 150 * 50
    assert table.weights_fetched[find(table, 1, 2, 32)] == 784 * 150 + 150 + 150 * 50 + 50
    assert table.activation_accesses[find(table, 1, 2, 32)] == (784 + 150) + (150 + 50)


def test_seed_statistics_are_mean_and_std(lenet):
    from jsplit.train import stack_seeds

    a, b = lenet.init(jax.random.PRNGKey(0)), lenet.init(jax.random.PRNGKey(1))
    grid = candidate_grid([0.0], 3, [32])
    accuracy = np.stack([np.full(len(grid), 0.97), np.full(len(grid), 0.99)], axis=1)
    table = build_table(lenet, [stack_seeds([a, b])], grid, np.zeros_like(accuracy), accuracy, HOROWITZ, 0.2,
                        stacked=True)

    np.testing.assert_allclose(table.accuracy, 0.98)
    np.testing.assert_allclose(table.accuracy_std, 0.01 * np.sqrt(2))  # sample standard deviation, ddof 1


def test_unknown_integer_width_rejected():
    with pytest.raises(ValueError, match=r"no integer multiply energy for \[6\] bits"):
        HOROWITZ.mac_j(np.asarray([32, 8, 6]))
