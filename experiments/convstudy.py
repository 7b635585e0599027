"""The efficient-convolution study: what separable convolutions save, computed and measured.

    python -m experiments.convstudy calc [--json]     # parameters and multiplications, from formulas,
                                                  # checked against Keras layers' own counts
    python -m experiments.convstudy speed             # forward time of 16-layer stacks per conv kind
    python -m experiments.convstudy compare --epochs 10   # Regular / Both / Separable, same network

Every figure is computed here; none is typed in. Outputs go under --out (default runs/convstudy/).
Keras is imported inside the functions that build models, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from driving import cli
from driving.files import check_writable_folder, save_figure, write_json, write_text
from experiments.loaders import DataError, compare_data

if TYPE_CHECKING:
    import keras
    from keras import layers

DEFAULT_OUT = Path("runs/convstudy")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---------------------------------------------------------------------------------------------
# calc: the worked examples, from formulas, checked against Keras


def conv_out(size: int, kernel: int) -> int:
    """Output size of a valid (unpadded), stride-1 convolution."""
    return size - kernel + 1


def regular_cost(h: int, w: int, m: int, n: int, kh: int, kw: int) -> tuple[int, int]:
    """(weights, multiplications) of a valid conv with an kh x kw kernel, m inputs, n outputs."""
    oh, ow = conv_out(h, kh), conv_out(w, kw)
    return kh * kw * m * n, oh * ow * kh * kw * m * n


def depthwise_separable_cost(h: int, w: int, m: int, n: int, k: int) -> tuple[int, int]:
    """(weights, multiplications): a k x k depthwise conv per input channel, then a 1x1 to n."""
    oh, ow = conv_out(h, k), conv_out(w, k)
    return k * k * m + m * n, oh * ow * k * k * m + oh * ow * m * n


def spatially_separable_cost(h: int, w: int, m: int, k: int) -> tuple[int, int]:
    """(weights, multiplications): a k x 1 conv from m channels to one, then a 1 x k conv on it."""
    first_w, first_mult = regular_cost(h, w, m, 1, k, 1)
    second_w, second_mult = regular_cost(conv_out(h, k), w, 1, 1, 1, k)
    return first_w + second_w, first_mult + second_mult


def mobilenet_cost(dk: int, m: int, n: int, df: int) -> dict[str, float]:
    """MobileNet's cost formulas for a DF x DF output: separable against regular, and the
    reduction 1/N + 1/DK^2 that their ratio simplifies to."""
    separable = dk * dk * m * df * df + m * n * df * df
    regular = dk * dk * m * n * df * df
    return {
        "separable": separable,
        "regular": regular,
        "ratio": separable / regular,
        "reduction_formula": 1 / n + 1 / dk**2,
    }


def _keras_counts(input_shape: tuple[int, int, int], *convs: layers.Layer) -> tuple[int, int]:
    """(parameters, multiplications) of a stack of bias-free conv layers as Keras builds it."""
    from driving import tfsetup

    tfsetup.setup()

    import keras

    from driving.models import count_macs

    inputs = keras.Input(input_shape)
    x = inputs
    for conv in convs:
        x = conv(x)
    model = keras.Model(inputs, x)
    return int(model.count_params()), count_macs(model)


def calc() -> dict:
    """Every worked example, each from the formula and from Keras layers."""
    from driving import tfsetup

    tfsetup.setup()

    from keras import layers

    h = w = 12
    m, n, k = 3, 256, 5
    reg = regular_cost(h, w, m, n, k, k)
    dws = depthwise_separable_cost(h, w, m, n, k)
    sps = spatially_separable_cost(h, w, m, k)
    one = regular_cost(h, w, m, 1, k, k)  # the regular conv the spatial pair replaces
    # The article's count gives the second (1 x k) conv m input channels instead of one.
    article_sps = (
        sps[1]
        - regular_cost(conv_out(h, k), w, 1, 1, 1, k)[1]
        + regular_cost(conv_out(h, k), w, m, 1, 1, k)[1]
    )
    shape = (h, w, m)
    keras_reg = _keras_counts(shape, layers.Conv2D(n, k, use_bias=False))
    keras_dws = _keras_counts(shape, layers.SeparableConv2D(n, k, use_bias=False))
    keras_sps = _keras_counts(
        shape, layers.Conv2D(1, (k, 1), use_bias=False), layers.Conv2D(1, (1, k), use_bias=False)
    )
    keras_one = _keras_counts(shape, layers.Conv2D(1, k, use_bias=False))
    df = conv_out(h, k)
    return {
        "input": f"{h}x{w}x{m}, {k}x{k} kernel, valid, {n} outputs (no biases)",
        "regular": {"params": reg[0], "mults": reg[1], "keras": keras_reg},
        "depthwise_separable": {
            "params": dws[0],
            "mults": dws[1],
            "keras": keras_dws,
            "mults_percent_of_regular": 100 * dws[1] / reg[1],
        },
        "spatially_separable": {
            "params": sps[0],
            "mults": sps[1],
            "keras": keras_sps,
            "regular_params": one[0],
            "regular_mults": one[1],
            "regular_keras": keras_one,
            "article_mults": article_sps,
        },
        "mobilenet": mobilenet_cost(k, m, n, df),
    }


def print_calc(r: dict) -> None:
    reg, dws, sps, mob = r["regular"], r["depthwise_separable"], r["spatially_separable"], r["mobilenet"]

    def check(fig: dict, params: str = "params", mults: str = "mults", keras_key: str = "keras"):
        ok = (fig[params], fig[mults]) == tuple(fig[keras_key])
        return "matches Keras" if ok else f"MISMATCH: Keras says {fig[keras_key]}"

    print(f"Input {r['input']}\n")
    print(f"{'convolution':34} {'params':>8} {'multiplications':>16}")
    print(f"{'regular 5x5, 256 outputs':34} {reg['params']:>8,} {reg['mults']:>16,}   {check(reg)}")
    print(
        f"{'depthwise-separable 5x5 + 1x1':34} {dws['params']:>8,} {dws['mults']:>16,}   "
        f"{check(dws)}; {dws['mults_percent_of_regular']:.2f}% of the regular multiplications"
    )
    print("\nTo one output channel:")
    print(
        f"{'regular 5x5':34} {sps['regular_params']:>8,} {sps['regular_mults']:>16,}   "
        f"{check(sps, 'regular_params', 'regular_mults', 'regular_keras')}"
    )
    print(f"{'spatially separable 5x1 then 1x5':34} {sps['params']:>8,} {sps['mults']:>16,}   {check(sps)}")
    print(
        f"  One article counts {sps['article_mults']:,} multiplications for this pair by giving "
        f"the 1x5 conv 3 input channels;\n  the first conv outputs one channel, so the true "
        f"figure is {sps['mults']:,}."
    )
    print(
        f"\nMobileNet: DK*DK*M*DF*DF + M*N*DF*DF = {mob['separable']:,} against "
        f"DK*DK*M*N*DF*DF = {mob['regular']:,}"
    )
    print(
        f"  ratio {mob['ratio']:.5f} = 1/N + 1/DK^2 = {mob['reduction_formula']:.5f} "
        f"({100 * mob['ratio']:.2f}%)"
    )


# ---------------------------------------------------------------------------------------------
# speed: forward time of deep stacks of each convolution kind


def conv_layer(kind: str, filters: int) -> list[layers.Layer]:
    """One 'layer' of a speed stack; conv1x3+conv3x1 is the pair that replaces one 3x3."""
    from driving import tfsetup

    tfsetup.setup()

    from keras import layers

    same = {"padding": "same", "activation": "relu"}
    return {
        "conv5x5": lambda: [layers.Conv2D(filters, 5, **same)],
        "conv3x3": lambda: [layers.Conv2D(filters, 3, **same)],
        "conv1x3+conv3x1": lambda: [
            layers.Conv2D(filters, (1, 3), **same),
            layers.Conv2D(filters, (3, 1), **same),
        ],
        "depthwise3x3": lambda: [layers.DepthwiseConv2D(3, **same)],
        "conv1x1": lambda: [layers.Conv2D(filters, 1, **same)],
    }[kind]()


SPEED_KINDS = ("conv5x5", "conv3x3", "conv1x3+conv3x1", "depthwise3x3", "conv1x1")


def speed_stack(kind: str, filters: int, size: int, depth: int) -> keras.Model:
    from driving import tfsetup

    tfsetup.setup()

    import keras

    inputs = keras.Input((size, size, filters))
    x = inputs
    for _ in range(depth):
        for layer in conv_layer(kind, filters):
            x = layer(x)
    return keras.Model(inputs, x, name=kind.replace("+", "_"))  # "+" is not a valid scope name


@dataclass
class SpeedRow:
    device: str
    kind: str
    filters: int
    macs_per_image: int
    ms_per_batch: float  # median


def time_forward(model: keras.Model, batch: np.ndarray, batches: int, device: str) -> float:
    """Median milliseconds per forward batch of a compiled (traced) call, after a warm-up."""
    from driving import tfsetup

    tfsetup.setup()

    import tensorflow as tf  # the timing harness only; the models themselves are pure Keras

    with tf.device(device):
        x = tf.constant(batch)
        forward = tf.function(lambda t: model(t, training=False))
        forward(x).numpy()  # trace and warm up
        times = []
        for _ in range(batches):
            start = time.perf_counter()
            forward(x).numpy()
            times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def devices() -> list[str]:
    from driving import tfsetup

    tfsetup.setup()

    import tensorflow as tf

    return ["/CPU:0"] + (["/GPU:0"] if tf.config.list_physical_devices("GPU") else [])


def speed(
    filters: list[int],
    size: int,
    depth: int,
    batch_size: int,
    batches: int,
    kinds: tuple[str, ...] = SPEED_KINDS,
) -> list[SpeedRow]:
    from tqdm import tqdm

    from driving.models import count_macs

    rng = np.random.default_rng(0)
    jobs = [(d, k, f) for d in devices() for k in kinds for f in filters]
    rows = []
    for device, kind, f in tqdm(jobs, desc="speed", unit="stack"):
        model = speed_stack(kind, f, size, depth)
        batch = rng.standard_normal((batch_size, size, size, f), dtype=np.float32)
        rows.append(
            SpeedRow(
                device.strip("/").split(":")[0],
                kind,
                f,
                count_macs(model),
                time_forward(model, batch, batches, device),
            )
        )
    return rows


def _ns_per_mac(r: SpeedRow, batch_size: int) -> float:
    return 1e6 * r.ms_per_batch / (r.macs_per_image * batch_size)


def speed_report(rows: list[SpeedRow], out: Path, setup: str, batch_size: int) -> str:
    plt = _pyplot()
    lines = [
        f"Forward time, {setup}",
        "",
        "| device | stack | filters | MACs/image | ms/batch | MACs vs conv3x3 | time vs conv3x3 "
        "| ns per MAC |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    ref = {(r.device, r.filters): r for r in rows if r.kind == "conv3x3"}
    for r in rows:
        base = ref.get((r.device, r.filters))
        mac_ratio = f"{r.macs_per_image / base.macs_per_image:.2f}" if base else "-"
        time_ratio = f"{r.ms_per_batch / base.ms_per_batch:.2f}" if base else "-"
        lines.append(
            f"| {r.device} | {r.kind} | {r.filters} | {r.macs_per_image:,} "
            f"| {r.ms_per_batch:.2f} | {mac_ratio} | {time_ratio} "
            f"| {_ns_per_mac(r, batch_size):.3f} |"
        )
    for device in sorted({r.device for r in rows}):
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for kind in dict.fromkeys(r.kind for r in rows):
            pts = [(r.filters, r.ms_per_batch) for r in rows if r.kind == kind and r.device == device]
            ax.plot(*zip(*pts), marker="o", label=kind)
        ax.set(
            title=f"Forward time per batch ({device})",
            xlabel="filters",
            ylabel="ms per batch (median, log scale)",
            yscale="log",
        )
        ax.set_xticks(sorted({r.filters for r in rows}))
        ax.grid(alpha=0.3)
        ax.legend()
        save_figure(fig, out / f"speed_{device.lower()}.png", bbox_inches="tight")
    # What the numbers show: stacks that need fewer MACs than another stack yet take as long.
    pairs = sorted(
        (
            (b.macs_per_image / a.macs_per_image, a, b)
            for a in rows
            for b in rows
            if a.device == b.device
            and a.macs_per_image < b.macs_per_image
            and a.ms_per_batch >= b.ms_per_batch
        ),
        key=lambda p: -p[0],
    )
    lines.append("")
    lines.append(f"Fewer MACs but no faster ({len(pairs)} pairs; the largest MAC gaps):")
    lines += [
        f"- {a.kind} at {a.filters} filters: {ratio:.1f}x fewer MACs than {b.kind} at "
        f"{b.filters} filters, {a.ms_per_batch:.1f} ms against {b.ms_per_batch:.1f} ms "
        f"({a.device})"
        for ratio, a, b in pairs[:5]
    ] or ["- none in this run"]
    text = "\n".join(lines) + "\n"
    write_text(out / "speed.md", text)
    write_json(out / "speed.json", [asdict(r) for r in rows])
    return text


# ---------------------------------------------------------------------------------------------
# compare: Regular / Both / Separable on one macro-architecture


VARIANTS = ("regular", "both", "separable")


def _conv(variant: str, filters: int, position: int) -> layers.Layer:
    """Regular everywhere, separable everywhere, or (both) regular first and separable second
    in every block."""
    from keras import layers

    separable = variant == "separable" or (variant == "both" and position == 1)
    conv = layers.SeparableConv2D if separable else layers.Conv2D
    return conv(filters, 3, padding="same", use_bias=False)


def compare_model(variant: str, input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """Three blocks of [conv, BN, relu] x 2 + MaxPool + Dropout, then a Dense head; only the
    convolutions change between variants."""
    from driving import tfsetup

    tfsetup.setup()

    import keras
    from keras import layers

    inputs = keras.Input(input_shape)
    x = inputs
    for filters, dropout in ((32, 0.2), (64, 0.3), (128, 0.4)):
        for position in (0, 1):
            x = _conv(variant, filters, position)(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Dropout(dropout)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=variant)


@dataclass
class CompareResult:
    variant: str
    params: int
    flops: int  # 2 x multiply-accumulates per image
    train_seconds: float
    history: dict
    val_accuracy_recomputed_bn: float  # after the run, BatchNorm statistics recomputed (see below)


def recompute_batch_norm(model: keras.Model, x: np.ndarray, batch_size: int) -> None:
    """Set every BatchNormalization layer's moving mean and variance to their average over `x`,
    with Dropout off, as inference sees the network. Keras updates them with momentum 0.99 from
    a variance of 1; MNIST's first-layer activations vary ~100x less, so after a short run the
    stored statistics are still mostly the initial ones and inference-mode accuracy can sit at
    chance while the weights are fine (docs/mnist.md)."""
    from keras import layers

    norms = [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]
    dropouts = [layer for layer in model.layers if isinstance(layer, layers.Dropout)]
    momenta, rates = [n.momentum for n in norms], [d.rate for d in dropouts]
    try:
        for layer in dropouts:
            layer.rate = 0.0
        for k, start in enumerate(range(0, len(x), batch_size), start=1):
            for layer in norms:
                layer.momentum = 1.0 - 1.0 / k  # a running mean over the batches seen so far
            model(x[start : start + batch_size], training=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
        for layer, rate in zip(dropouts, rates):
            layer.rate = rate


def _accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    return float((model.predict(x, batch_size=500, verbose=0).argmax(axis=1) == y).mean())


def compare(data: dict[str, np.ndarray], epochs: int, batch_size: int, seed: int) -> list[CompareResult]:
    from driving import tfsetup

    tfsetup.setup()

    import keras

    from driving.models import count_macs

    results = []
    for variant in VARIANTS:
        keras.utils.set_random_seed(seed)
        model = compare_model(variant, data["x_train"].shape[1:], 10)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=keras.losses.CategoricalCrossentropy(),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        )
        y, y_val = (keras.utils.to_categorical(data[k], 10) for k in ("y_train", "y_test"))
        print(f"== {variant}: {model.count_params():,} params")
        start = time.perf_counter()
        history = model.fit(
            data["x_train"],
            y,
            batch_size=batch_size,
            epochs=epochs,
            validation_data=(data["x_test"], y_val),
            verbose=1 if sys.stdout.isatty() else 2,
        )
        seconds = time.perf_counter() - start
        recompute_batch_norm(model, data["x_train"], batch_size)
        results.append(
            CompareResult(
                variant,
                int(model.count_params()),
                2 * count_macs(model),
                seconds,
                {k: [float(v) for v in vs] for k, vs in history.history.items()},
                _accuracy(model, data["x_test"], data["y_test"]),
            )
        )
    return results


def compare_report(results: list[CompareResult], out: Path, setup: str) -> str:
    plt = _pyplot()
    names = [r.variant for r in results]
    for key, title, ylabel in (
        ("params", "Parameters", "parameters"),
        ("flops", "FLOPs per image", "FLOPs"),
        ("train_seconds", "Training time", "seconds"),
    ):
        fig, ax = plt.subplots(figsize=(5, 4))
        values = [getattr(r, key) for r in results]
        bars = ax.bar(names, values, color=["tab:blue", "tab:orange", "tab:green"])
        ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values])
        ax.set(title=title, ylabel=ylabel)
        save_figure(fig, out / f"compare_{key}.png", bbox_inches="tight")
    for metric, title in (("val_loss", "Validation loss"), ("val_accuracy", "Validation accuracy")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in results:
            ax.plot(range(1, len(r.history[metric]) + 1), r.history[metric], label=r.variant)
        ax.set(title=title, xlabel="epoch", ylabel=metric.removeprefix("val_"))
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend()
        save_figure(fig, out / f"compare_{metric}.png", bbox_inches="tight")
    ref = results[0]
    lines = [
        f"Regular / Both / Separable, {setup}",
        "",
        "| variant | params | FLOPs/image | training s | final val loss | best val accuracy "
        "| final val accuracy, BN recomputed | params vs regular | FLOPs vs regular |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.variant} | {r.params:,} | {r.flops:,} | {r.train_seconds:.1f} "
            f"| {r.history['val_loss'][-1]:.4f} | {max(r.history['val_accuracy']):.4f} "
            f"| {r.val_accuracy_recomputed_bn:.4f} "
            f"| {r.params / ref.params:.2f} | {r.flops / ref.flops:.2f} |"
        )
    lines += [
        "",
        "Validation accuracy as Keras measures it during training (BatchNorm's moving "
        "statistics), and after the run with those statistics recomputed over the training "
        "images: a large gap means the run was too short for the moving statistics to settle.",
    ]
    text = "\n".join(lines) + "\n"
    write_text(out / "compare.md", text)
    write_json(out / "compare.json", [asdict(r) for r in results])
    return text


# ---------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.convstudy",
        description="What separable convolutions save: worked "
        "examples (calc), forward timings (speed) and a training "
        "comparison (compare).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "calc",
        help="parameters and multiplications of regular, depthwise- and "
        "spatially separable convolutions, checked against Keras",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p = sub.add_parser("speed", help="forward time of deep stacks of each convolution kind")
    p.add_argument(
        "--filters",
        type=cli.positive_int,
        nargs="+",
        default=[8, 16, 32, 64],
        help="stack widths to time (default 8 16 32 64)",
    )
    p.add_argument("--size", type=cli.positive_int, default=32, help="input height and width (default 32)")
    p.add_argument("--layers", type=cli.positive_int, default=16, help="layers per stack (default 16)")
    p.add_argument(
        "--batch-size", type=cli.positive_int, default=32, help="images per forward batch (default 32)"
    )
    p.add_argument(
        "--batches", type=cli.positive_int, default=100, help="timed batches per stack (default 100)"
    )
    p.add_argument(
        "--kinds",
        nargs="+",
        choices=SPEED_KINDS,
        default=list(SPEED_KINDS),
        help="convolution kinds to time (default all)",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default runs/convstudy)")
    p = sub.add_parser(
        "compare", help="Regular / Both / Separable: same network, only the convolutions swapped"
    )
    p.add_argument(
        "--epochs", type=cli.positive_int, default=10, help="default 10 (the original ran 150 on a GPU)"
    )
    p.add_argument("--batch-size", type=cli.positive_int, default=256, help="default 256, the original's")
    p.add_argument(
        "--data-dir",
        type=Path,
        help="cifar-10-batches-py folder, or MNIST files; default: cached CIFAR-10, else MNIST",
    )
    p.add_argument("--subset", type=cli.positive_int, help="use only the first N training and N test images")
    p.add_argument("--seed", type=cli.seed, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default runs/convstudy)")
    args = parser.parse_args(argv)

    if args.command == "calc":
        figures = calc()
        if args.json:
            print(json.dumps(figures, indent=2))
        else:
            print_calc(figures)
        return 0
    try:  # in one line, before any long work: unreadable data, an unwritable --out
        if args.command == "compare":
            data, name = compare_data(args.data_dir)
        check_writable_folder(args.out)
    except (DataError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.command == "speed":
        rows = speed(args.filters, args.size, args.layers, args.batch_size, args.batches, tuple(args.kinds))
        setup = (
            f"{args.layers}-layer stacks on {args.size}x{args.size} inputs, batch "
            f"{args.batch_size}, median of {args.batches} batches"
        )
        print(speed_report(rows, args.out, setup, args.batch_size))
        return 0
    if args.subset:
        data = {k: v[: args.subset] for k, v in data.items()}
    results = compare(data, args.epochs, args.batch_size, args.seed)
    setup = (
        f"{name}, {len(data['x_train'])} training images, {args.epochs} epochs, "
        f"Adam 1e-3, batch {args.batch_size}"
    )
    print(compare_report(results, args.out, setup))
    return 0


if __name__ == "__main__":
    sys.exit(main())
