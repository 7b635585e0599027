"""driving.mnist: exact model sizes, IDX/npz loaders on real files, a one-epoch run end to end."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from driving import mnist
from driving.mnist import MnistDataError
from driving.models import count_params

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: 0x0000, type 0x08, ndim, big-endian dims, data."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def tiny_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n 28x28 images whose label sets which 7x7 cell of a 4x4 grid is bright: learnable."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
    for img, label in zip(images, labels):
        r, c = divmod(int(label), 4)
        img[r * 7 : (r + 1) * 7, c * 7 : (c + 1) * 7] = 255
    return images, labels


def write_mnist_folder(
    folder: Path, n_train: int = 200, n_test: int = 100, gz: bool = False
) -> dict[str, np.ndarray]:
    """The four original MNIST IDX files, tiny, raw or gzipped."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = dict(zip(("x_train", "y_train"), tiny_digits(n_train, 0)))
    arrays.update(zip(("x_test", "y_test"), tiny_digits(n_test, 1)))
    for key, name in IDX_FILES.items():
        data = idx_bytes(arrays[key])
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


# --- models ---------------------------------------------------------------------------------


def test_models_have_the_published_trainable_parameter_counts():
    assert count_params(mnist.build("baseline"))[1] == 147_658
    assert count_params(mnist.build("effnet"))[1] == 68_090
    assert mnist.LEARNING_RATES == {"baseline": 1e-3, "effnet": 1e-2}


def test_effnet_needs_far_fewer_macs_than_baseline():
    base, eff = (mnist.count_macs(mnist.build(n)) for n in ("baseline", "effnet"))
    # First conv of the baseline alone: 26*26 outputs x 32 filters x 3*3 taps.
    assert base > 26 * 26 * 32 * 9
    assert eff < base / 4


def test_dry_run_json_lists_both_models(capsys):
    assert mnist.main(["--dry-run", "--json"]) == 0
    rows = {r["model"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["baseline"]["trainable_params"] == 147_658
    assert rows["effnet"]["trainable_params"] == 68_090
    assert rows["effnet"]["params"] > rows["effnet"]["trainable_params"]  # BN moving statistics


# --- loaders --------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_round_trip(tmp_path, gz):
    arrays = write_mnist_folder(tmp_path, 30, 20, gz=gz)
    loaded, source = mnist.load_mnist(tmp_path)
    assert source == str(tmp_path)
    for key, array in arrays.items():
        np.testing.assert_array_equal(loaded[key], array)
        assert loaded[key].dtype == np.uint8


def test_npz_round_trip(tmp_path):
    arrays = write_mnist_folder(tmp_path / "idx", 30, 20)
    np.savez(tmp_path / "mnist.npz", **arrays)
    loaded, _ = mnist.load_mnist(tmp_path)
    np.testing.assert_array_equal(loaded["x_test"], arrays["x_test"])


def test_read_idx_rejects_corrupt_files(tmp_path):
    good = idx_bytes(np.zeros((3, 28, 28), np.uint8))
    cases = {
        "truncated": (good[:-10], "holds"),
        "bad-magic": (b"\x08\x03" + good[2:], "magic"),
        "bad-type": (b"\x00\x00\x42" + good[3:], "magic"),
        "short": (b"\x00\x00", "too short"),
        "header-cut": (good[:9], "ends early"),
        "extra": (good + b"\x00", "holds"),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(MnistDataError, match=message) as err:
            mnist.read_idx(path)
        assert str(path) in str(err.value)
    bad_gz = tmp_path / "broken.gz"
    bad_gz.write_bytes(b"not gzip at all")
    with pytest.raises(MnistDataError, match="cannot read"):
        mnist.read_idx(bad_gz)


def test_corrupt_file_in_folder_is_named(tmp_path):
    write_mnist_folder(tmp_path, 30, 20)
    labels = tmp_path / IDX_FILES["y_test"]
    labels.write_bytes(labels.read_bytes()[:-5])
    with pytest.raises(MnistDataError, match="t10k-labels-idx1-ubyte"):
        mnist.load_mnist(tmp_path)


def test_missing_files_and_bad_contents_get_clear_errors(tmp_path):
    write_mnist_folder(tmp_path / "a", 30, 20)
    (tmp_path / "a" / IDX_FILES["x_train"]).unlink()
    with pytest.raises(MnistDataError, match="train-images-idx3-ubyte.*make mnist-data"):
        mnist.load_mnist(tmp_path / "a")

    arrays = write_mnist_folder(tmp_path / "b", 30, 20)
    (tmp_path / "b" / IDX_FILES["y_train"]).write_bytes(idx_bytes(arrays["y_train"][:10]))
    with pytest.raises(MnistDataError, match="30 train images but labels"):
        mnist.load_mnist(tmp_path / "b")

    arrays["y_test"][0] = 12
    np.savez(tmp_path / "mnist.npz", **arrays)
    with pytest.raises(MnistDataError, match="labels outside 0..9"):
        mnist.load_mnist(tmp_path)

    np.savez(tmp_path / "c.npz", x_train=arrays["x_train"])
    with pytest.raises(MnistDataError, match="missing arrays"):
        mnist.load_mnist(tmp_path / "c.npz")
    (tmp_path / "d.npz").write_bytes(b"garbage")
    with pytest.raises(MnistDataError, match="not a readable .npz"):
        mnist.load_mnist(tmp_path / "d.npz")


def test_cli_reports_a_bad_data_dir_without_a_traceback(tmp_path, capsys):
    assert mnist.main(["--data-dir", str(tmp_path), "--epochs", "1"]) == 2
    assert "missing IDX files" in capsys.readouterr().err


# --- a real, tiny run -----------------------------------------------------------------------


def test_one_epoch_run_writes_models_table_and_plots(tmp_path, capsys):
    import keras

    write_mnist_folder(tmp_path / "data", 300, 100, gz=True)
    out = tmp_path / "run"
    assert (
        mnist.main(
            ["--data-dir", str(tmp_path / "data"), "--epochs", "1", "--batch-size", "100", "--out", str(out)]
        )
        == 0
    )
    for name in ("accuracy.png", "baseline_accuracy.png", "effnet_accuracy.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "results.json").read_text())
    results = {r["model"]: r for r in report["results"]}
    assert report["train_images"] == 300 and report["test_images"] == 100
    for name, r in results.items():
        assert r["epochs"] == r["epochs_planned"] == 1 and r["best_epoch"] == 1
        assert 0.0 <= r["test_accuracy"] <= 1.0
        assert r["h5_kb"] == round((out / f"{name}.h5").stat().st_size / 1024, 1)
        assert (out / f"{name}_history.csv").read_text().count("\n") == 2  # header + one epoch
    # The saved checkpoint reloads and is the model the table describes.
    model = keras.models.load_model(out / "effnet.h5", compile=False)
    assert count_params(model)[1] == results["effnet"]["trainable_params"] == 68_090

    base, eff = results["baseline"], results["effnet"]
    ratio = 100 * eff["test_accuracy"] / base["test_accuracy"]
    assert f"EffNet reaches {ratio:.2f}% of the baseline's accuracy with 46.11%" in report["headline"]
    table = (out / "results.md").read_text()
    assert "| baseline | 147,658 |" in table and "| effnet | 68,090 |" in table
    assert report["headline"] in table

    # Merging runs rebuilds the same table (used when the models train side by side).
    merged = mnist.combine([out], tmp_path / "merged")
    assert merged.read_text().splitlines()[:6] == table.splitlines()[:6]
