"""experiments.mnist and experiments.loaders: exact model sizes, IDX/npz loaders on real files, the command
line's refusals, and a one-epoch run end to end."""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from driving.models import count_macs, count_params
from experiments import loaders, mnist
from experiments.loaders import DataError

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


def test_effnet_is_the_steering_block_with_relu_and_keras_default_initialisers():
    # As the published figures (.h5 size included) were measured: ReLU inside the conv layers and
    # Keras' default initialisers after the 1x1 squeeze (the steering EffNets: LeakyReLU layers, He).
    model = mnist.build("effnet")
    assert count_params(model)[1] == 68_090
    assert not any("ReLU" in type(layer).__name__ for layer in model.layers)
    convs = [layer.get_config() for layer in model.layers if "Conv2D" in type(layer).__name__]
    assert [c["activation"] for c in convs] == ["relu"] * 16
    initialisers = [c.get("depthwise_initializer", c.get("kernel_initializer"))["class_name"] for c in convs]
    assert initialisers == ["HeNormal", "GlorotUniform", "GlorotUniform", "GlorotUniform"] * 4


def test_effnet_needs_far_fewer_macs_than_baseline():
    base, eff = (count_macs(mnist.build(n)) for n in ("baseline", "effnet"))
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
    loaded, source = loaders.load_mnist(tmp_path)
    assert source == str(tmp_path)
    for key, array in arrays.items():
        np.testing.assert_array_equal(loaded[key], array)
        assert loaded[key].dtype == np.uint8


def test_npz_round_trip(tmp_path):
    arrays = write_mnist_folder(tmp_path / "idx", 30, 20)
    np.savez(tmp_path / "mnist.npz", **arrays)
    loaded, _ = loaders.load_mnist(tmp_path)
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
        with pytest.raises(DataError, match=message) as err:
            loaders.read_idx(path)
        assert str(path) in str(err.value)
    bad_gz = tmp_path / "broken.gz"
    bad_gz.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read"):
        loaders.read_idx(bad_gz)


def test_corrupt_file_in_folder_is_named(tmp_path):
    write_mnist_folder(tmp_path, 30, 20)
    labels = tmp_path / IDX_FILES["y_test"]
    labels.write_bytes(labels.read_bytes()[:-5])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        loaders.load_mnist(tmp_path)


def test_missing_files_and_bad_contents_get_clear_errors(tmp_path):
    write_mnist_folder(tmp_path / "a", 30, 20)
    (tmp_path / "a" / IDX_FILES["x_train"]).unlink()
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*make mnist-data"):
        loaders.load_mnist(tmp_path / "a")

    arrays = write_mnist_folder(tmp_path / "b", 30, 20)
    (tmp_path / "b" / IDX_FILES["y_train"]).write_bytes(idx_bytes(arrays["y_train"][:10]))
    with pytest.raises(DataError, match="30 train images but labels"):
        loaders.load_mnist(tmp_path / "b")

    arrays["y_test"][0] = 12
    np.savez(tmp_path / "mnist.npz", **arrays)
    with pytest.raises(DataError, match="labels outside 0..9"):
        loaders.load_mnist(tmp_path)

    np.savez(tmp_path / "c.npz", x_train=arrays["x_train"])
    with pytest.raises(DataError, match="missing arrays"):
        loaders.load_mnist(tmp_path / "c.npz")
    (tmp_path / "d.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable .npz"):
        loaders.load_mnist(tmp_path / "d.npz")


def test_cli_reports_bad_data_in_one_line(tmp_path, capsys):
    out = ["--out", str(tmp_path / "out")]
    assert mnist.main(["--data-dir", str(tmp_path), "--epochs", "1", *out]) == 2
    assert "missing IDX files" in capsys.readouterr().err
    assert mnist.main(["--data-dir", str(tmp_path / "nowhere"), *out]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'nowhere'}: no such file or folder\n"
    assert mnist.main(["--combine", str(tmp_path), *out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "results.json: not found" in err
    (tmp_path / "results.json").write_text("{ truncated")
    assert mnist.main(["--combine", str(tmp_path), *out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'results.json'}: not a results.json" in err


@pytest.mark.parametrize(
    "option",
    [
        ["--epochs", "0"],
        ["--epochs", "-3"],
        ["--batch-size", "0"],
        ["--batch-size", "nan"],
        ["--subset", "0"],
        ["--val-split", "nan"],
        ["--val-split", "1"],
        ["--val-split", "-0.1"],
        ["--seed", "-1"],
    ],
)
def test_cli_refuses_bad_numbers_in_one_line(option, capsys):
    with pytest.raises(SystemExit) as exit_:
        mnist.main(option)
    assert exit_.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("python -m experiments.mnist: error: argument") and option[1] in message


def imports_keras_or_tensorflow(argv: list[str]) -> bool:
    """Run `python -m ARGV...` (a --help) in a fresh interpreter; did it import TensorFlow or Keras?"""
    code = (
        "import runpy, sys\n"
        f"sys.argv = {argv!r}\n"
        "try:\n"
        f"    runpy.run_module({argv[0]!r}, run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted({'tensorflow', 'keras'} & set(sys.modules)))\n"
    )
    repo = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True)
    assert "usage:" in run.stdout
    return run.stdout.strip().splitlines()[-1] != "[]"


def test_help_does_not_import_tensorflow():
    assert not imports_keras_or_tensorflow(["experiments.mnist", "--help"])


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
