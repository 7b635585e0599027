"""The experiments' data: MNIST from IDX or npz files, and CIFAR-10 from its python batches, each
checked so that a bad file ends in one line naming it (DataError), never in a traceback.

MNIST, first found wins: the folder or .npz given; data/mnist/ (what `make mnist-data` fetches);
Keras's cache ~/.keras/datasets/mnist.npz; a keras.datasets download.
"""

from __future__ import annotations

import gzip
import pickle
import zipfile
from pathlib import Path

import numpy as np

IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
DEFAULT_DATA_DIR = Path("data/mnist")
KERAS_CACHE = Path.home() / ".keras" / "datasets" / "mnist.npz"
CIFAR_CACHE = Path.home() / ".keras" / "datasets" / "cifar-10-batches-py"


class DataError(ValueError):
    """A missing, truncated or malformed data file; the message names it."""


# ---------------------------------------------------------------------------------------------
# MNIST: IDX and npz readers

# IDX type byte -> numpy dtype (IDX stores multi-byte values big-endian).
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_NAMES = {
    "x_train": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "y_train": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "x_test": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "y_test": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (raw or gzip-compressed) into an array, checking header and size."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read ({err})") from err
    if len(raw) < 4:
        raise DataError(f"{path}: {len(raw)} bytes, too short for an IDX header")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(
            f"{path}: bad IDX magic number 0x{raw[:4].hex()} "
            "(expected 0x0000TTDD: type byte, number of dimensions)"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path}: IDX header declares {ndim} dimensions but the file ends early")
    dims = tuple(int(d) for d in np.frombuffer(raw[4:header], ">u4"))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: header says shape {dims} ({expected} bytes of data) "
            f"but the file holds {len(raw) - header} bytes after the header"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _find_idx(folder: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(f"{path}: not a readable .npz file ({err})") from err
    missing = [k for k in _IDX_NAMES if k not in arrays]
    if missing:
        raise DataError(f"{path}: missing arrays {missing} (has {sorted(arrays)})")
    return {k: arrays[k] for k in _IDX_NAMES}


def _check(arrays: dict[str, np.ndarray], source: str) -> None:
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE[:2]:
            raise DataError(f"{source}: {split} images have shape {x.shape}, expected (N, 28, 28)")
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"{source}: {len(x)} {split} images but labels of shape {y.shape}")
        if len(y) and (y.min() < 0 or y.max() >= NUM_CLASSES):
            raise DataError(f"{source}: {split} labels outside 0..9 (min {y.min()}, max {y.max()})")


def read_folder(folder: str | Path) -> dict[str, np.ndarray]:
    """MNIST from a folder holding mnist.npz or the four original IDX files (raw or .gz), or from
    an .npz file itself."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"{folder}: no such file or folder")
    if folder.is_file():
        arrays = _read_npz(folder)
    elif (folder / "mnist.npz").is_file():
        arrays = _read_npz(folder / "mnist.npz")
    else:
        paths = {key: _find_idx(folder, names) for key, names in _IDX_NAMES.items()}
        missing = [names[0] for key, names in _IDX_NAMES.items() if paths[key] is None]
        if missing:
            raise DataError(
                f"{folder}: no mnist.npz and missing IDX files {missing} "
                "(raw or .gz); `make mnist-data` fetches them into data/mnist/"
            )
        arrays = {key: read_idx(path) for key, path in paths.items()}
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    _check(arrays, str(folder))
    return arrays


def load_mnist(data_dir: str | Path | None = None) -> tuple[dict[str, np.ndarray], str]:
    """The four MNIST arrays (x_train, y_train, x_test, y_test as uint8) and where they came from."""
    if data_dir is not None:
        return read_folder(data_dir), str(data_dir)
    if DEFAULT_DATA_DIR.is_dir() and any(DEFAULT_DATA_DIR.iterdir()):
        return read_folder(DEFAULT_DATA_DIR), str(DEFAULT_DATA_DIR)
    if KERAS_CACHE.is_file():
        return read_folder(KERAS_CACHE), str(KERAS_CACHE)
    from driving import tfsetup

    tfsetup.setup()

    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as err:  # no network: say how to get the files instead
        raise DataError(
            "MNIST not found in data/mnist/ or ~/.keras/datasets and the download "
            f"failed ({err}); run `make mnist-data` or pass --data-dir"
        ) from err
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    _check(arrays, "keras.datasets.mnist")
    return arrays, "keras.datasets.mnist"


# ---------------------------------------------------------------------------------------------
# CIFAR-10, and the convolution study's choice between it and MNIST


def load_cifar10(folder: Path) -> dict[str, np.ndarray]:
    """CIFAR-10 'python version' batches (trusted files: the format is pickle)."""

    def read(name: str) -> tuple[np.ndarray, np.ndarray]:
        path = folder / name
        try:
            with path.open("rb") as f:
                batch = pickle.load(f, encoding="bytes")
            x = np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            return x, np.asarray(batch[b"labels"], np.int64)
        except (OSError, pickle.UnpicklingError, KeyError, TypeError, ValueError, EOFError) as err:
            raise DataError(f"{path}: not a readable CIFAR-10 batch ({err})") from err

    parts = [read(f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = read("test_batch")
    return {
        "x_train": np.concatenate([p[0] for p in parts]),
        "y_train": np.concatenate([p[1] for p in parts]),
        "x_test": x_test,
        "y_test": y_test,
    }


def compare_data(data_dir: Path | None) -> tuple[dict[str, np.ndarray], str]:
    """CIFAR-10 if given or cached, otherwise MNIST; images scaled to [0, 1] with a channel axis."""
    for folder in (data_dir, CIFAR_CACHE):
        if folder is not None and (folder / "data_batch_1").is_file():
            data, name = load_cifar10(folder), f"CIFAR-10 ({folder})"
            break
    else:
        data, source = load_mnist(data_dir)
        data, name = dict(data), f"MNIST ({source})"
        data["x_train"], data["x_test"] = data["x_train"][..., None], data["x_test"][..., None]
    for split in ("train", "test"):
        data[f"x_{split}"] = data[f"x_{split}"].astype(np.float32) / 255.0
        data[f"y_{split}"] = data[f"y_{split}"].astype(np.int64)
    return data, name
