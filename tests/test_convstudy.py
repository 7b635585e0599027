"""experiments.convstudy: the worked examples reproduced, the command line's refusals, and tiny speed
and compare runs end to end."""

from __future__ import annotations

import json
import pickle

import keras
import numpy as np
import pytest

from experiments import convstudy
from experiments.loaders import DataError, compare_data
from tests.test_mnist import imports_keras_or_tensorflow, write_mnist_folder

PNG = b"\x89PNG\r\n\x1a\n"


def test_calc_reproduces_every_worked_example():
    r = convstudy.calc()
    reg, dws, sps = r["regular"], r["depthwise_separable"], r["spatially_separable"]
    assert (reg["params"], reg["mults"]) == (19_200, 1_228_800)
    assert (dws["params"], dws["mults"]) == (843, 53_952)
    assert round(dws["mults_percent_of_regular"], 2) == 4.39
    assert (sps["params"], sps["regular_params"]) == (20, 75)
    assert sps["article_mults"] == 2_400  # the article's count: second conv given 3 inputs
    assert sps["mults"] == 1_760  # the true one: 8*12*5*3 + 8*8*5*1
    # Keras builds the same layers and counts the same.
    assert tuple(reg["keras"]) == (19_200, 1_228_800)
    assert tuple(dws["keras"]) == (843, 53_952)
    assert tuple(sps["keras"]) == (20, 1_760)
    assert tuple(sps["regular_keras"]) == (75, 4_800)
    mob = r["mobilenet"]
    assert (mob["separable"], mob["regular"]) == (53_952, 1_228_800)
    assert mob["ratio"] == pytest.approx(1 / 256 + 1 / 25)
    assert mob["reduction_formula"] == pytest.approx(mob["ratio"])


def test_cost_formulas_match_keras_on_other_shapes():
    from keras import layers

    for h, m, n, k in ((9, 4, 7, 3), (16, 1, 5, 5)):
        assert convstudy.regular_cost(h, h, m, n, k, k) == convstudy._keras_counts(
            (h, h, m), layers.Conv2D(n, k, use_bias=False)
        )
        assert convstudy.depthwise_separable_cost(h, h, m, n, k) == convstudy._keras_counts(
            (h, h, m), layers.SeparableConv2D(n, k, use_bias=False)
        )


def test_calc_cli_states_the_true_figure(capsys):
    assert convstudy.main(["calc"]) == 0
    out = capsys.readouterr().out
    assert "2,400" in out and "true figure is 1,760" in out and "MISMATCH" not in out
    assert convstudy.main(["calc", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["regular"]["params"] == 19_200


def test_speed_writes_table_and_plot(tmp_path):
    out = tmp_path / "speed"
    assert (
        convstudy.main(
            [
                "speed",
                "--filters",
                "4",
                "8",
                "--size",
                "8",
                "--layers",
                "2",
                "--batch-size",
                "2",
                "--batches",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = json.loads((out / "speed.json").read_text())
    assert len(rows) == 5 * 2 * len(convstudy.devices())
    by = {(r["kind"], r["filters"]): r for r in rows if r["device"] == "CPU"}
    assert by[("conv5x5", 4)]["macs_per_image"] == 2 * 8 * 8 * 4 * 4 * 25
    assert by[("conv1x3+conv3x1", 8)]["macs_per_image"] == 2 * 8 * 8 * 8 * 8 * 6
    assert by[("depthwise3x3", 8)]["macs_per_image"] == 2 * 8 * 8 * 8 * 9
    assert all(r["ms_per_batch"] > 0 for r in rows)
    assert (out / "speed_cpu.png").read_bytes()[:8] == PNG
    table = (out / "speed.md").read_text()
    assert table.count("| CPU |") == 10 and "Fewer MACs but no faster" in table


def test_compare_on_mnist_writes_five_figures_and_a_table(tmp_path):
    write_mnist_folder(tmp_path / "data", 256, 64)
    out = tmp_path / "compare"
    assert (
        convstudy.main(
            [
                "compare",
                "--data-dir",
                str(tmp_path / "data"),
                "--epochs",
                "1",
                "--batch-size",
                "128",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    for name in ("params", "flops", "train_seconds", "val_loss", "val_accuracy"):
        assert (out / f"compare_{name}.png").read_bytes()[:8] == PNG
    results = {r["variant"]: r for r in json.loads((out / "compare.json").read_text())}
    assert list(results) == ["regular", "both", "separable"]
    assert results["regular"]["params"] > results["both"]["params"] > results["separable"]["params"]
    assert results["regular"]["flops"] > results["both"]["flops"] > results["separable"]["flops"]
    assert all(len(r["history"]["val_loss"]) == 1 for r in results.values())
    assert all(0.0 <= r["val_accuracy_recomputed_bn"] <= 1.0 for r in results.values())
    table = (out / "compare.md").read_text()
    assert "MNIST" in table and table.count("\n| ") == 4  # header + three variants
    assert "BN recomputed" in table


def test_recompute_batch_norm_sets_the_statistics_inference_sees():
    from keras import layers

    inputs = keras.Input((4,))
    outputs = layers.BatchNormalization()(layers.Dropout(0.5)(inputs))
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(0).normal(3.0, 0.05, (1000, 4)).astype("float32")
    convstudy.recompute_batch_norm(model, x, batch_size=100)
    norm, dropout = model.layers[-1], model.layers[1]
    # With Dropout on, the variance would be ~9 (half the values zeroed, the rest doubled).
    np.testing.assert_allclose(keras.ops.convert_to_numpy(norm.moving_mean), x.mean(axis=0), atol=2e-3)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(norm.moving_variance), x.var(axis=0), rtol=0.1)
    assert norm.momentum == 0.99 and dropout.rate == 0.5  # the layers are left as they were


def _write_cifar(folder, n=4):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"labels": list(rng.integers(0, 10, n)),
        }
        (folder / name).write_bytes(pickle.dumps(batch))


def test_compare_prefers_cifar10_when_given(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-py")
    data, name = compare_data(tmp_path / "cifar-10-batches-py")
    assert name.startswith("CIFAR-10")
    assert data["x_train"].shape == (20, 32, 32, 3) and data["x_test"].shape == (4, 32, 32, 3)
    assert data["x_train"].max() <= 1.0
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"broken")
    with pytest.raises(DataError, match="test_batch"):
        compare_data(tmp_path / "cifar-10-batches-py")


def test_compare_reports_bad_data_in_one_line(tmp_path, capsys):
    _write_cifar(tmp_path / "cifar")
    (tmp_path / "cifar" / "data_batch_3").write_bytes(b"broken")
    out = ["--out", str(tmp_path / "out")]
    assert convstudy.main(["compare", "--data-dir", str(tmp_path / "cifar"), *out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'cifar' / 'data_batch_3'}: not a readable" in err
    assert convstudy.main(["compare", "--data-dir", str(tmp_path / "nowhere"), *out]) == 2
    assert "no such file or folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["speed", "--filters", "8", "0"],
        ["speed", "--size", "-1"],
        ["speed", "--layers", "0"],
        ["speed", "--batches", "nan"],
        ["compare", "--epochs", "0"],
        ["compare", "--batch-size", "-256"],
        ["compare", "--subset", "0"],
    ],
)
def test_cli_refuses_bad_numbers_in_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        convstudy.main(argv)
    assert exit_.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith(f"python -m experiments.convstudy {argv[0]}: error: argument")


@pytest.mark.parametrize("argv", [["--help"], ["compare", "--help"]])
def test_help_does_not_import_tensorflow(argv):
    assert not imports_keras_or_tensorflow(["experiments.convstudy", *argv])
