"""The registry of named steering models, and MAC counting.

A model is a function that returns a keras.Model for a given input shape; `@register("name")`
puts it in MODELS, so a variant is one line. Every model takes float32 frames in [-0.5, 0.5]
(driving.preprocess scales them) and outputs one steering value; only the `-lcn` variants
normalise inside the model, with a parameter-free first layer (see model_input). Only
keras.layers / keras.ops are used, so the same code runs on the JAX or PyTorch backends.
Model files (with the preprocessing they carry) are driving/modelio.py.

    python -m driving.models              # table of models: params and forward MACs per frame
    python -m driving.models --json
    python -m driving.models --litert --model effnet-tiny    # and its LiteRT file sizes
    python -m driving.models save effnet /tmp/effnet.keras   # an untrained model, for smoke tests

Keras is imported inside the builders, not here: listing the registry (every `--help` that names
the models) must not wait for TensorFlow. build() imports it quietly first.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from driving.config import INPUT_SHAPE
from driving.modelio import TFLITE_KINDS, ModelInfo, save_keras, to_tflite
from driving.run import Checkpoint

if TYPE_CHECKING:
    import keras

MODELS: dict[str, Callable[..., keras.Model]] = {}


def register(name: str) -> Callable:
    """Decorator: add a builder to MODELS under `name`."""

    def add(builder: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        if name in MODELS:
            raise ValueError(f"model name {name!r} is registered twice")
        MODELS[name] = builder
        return builder

    return add


class OptionError(ValueError):
    """A builder option out of range: a wrong setting, not an input its layers cannot take."""


def build(name: str, input_shape: tuple[int, int, int] = INPUT_SHAPE, **kw) -> keras.Model:
    """A fresh, untrained model by registry name. Raises KeyError for an unknown name, and
    ValueError naming the model for a bad option or an input shape its layers cannot take."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; choose from: {', '.join(MODELS)}")
    from driving import tfsetup

    tfsetup.setup()

    try:
        return MODELS[name](input_shape=input_shape, **kw)
    except OptionError as e:
        raise ValueError(f"model {name!r}: {e}") from None
    except ValueError as e:  # e.g. an input too small for five halvings
        first = str(e).strip().splitlines()[0]
        raise ValueError(f"model {name!r} cannot take input {input_shape}: {first[:200]}") from None


LOCAL_CONTRAST = ("only", "beside")


def model_input(input_shape, local_contrast: str | None = None, name: str = "frame"):
    """(the model's Input, what its first layer sees): the frame itself; with `local_contrast`
    "only" its local contrast instead (driving.contrast.LocalContrast), or "beside" the frame and
    its local contrast stacked as six channels. The layer has no weights and travels inside the
    model file, so serving and every export apply it as training did."""
    import keras
    from keras import layers

    inputs = keras.Input(input_shape, name=name)
    if local_contrast is None:
        return inputs, inputs
    if local_contrast not in LOCAL_CONTRAST:
        raise OptionError(
            f"local_contrast must be one of {', '.join(LOCAL_CONTRAST)} or None, not {local_contrast!r}"
        )
    from driving.contrast import LocalContrast

    contrast = LocalContrast(name="local_contrast")(inputs)
    if local_contrast == "only":
        return inputs, contrast
    return inputs, layers.Concatenate(name="frame_and_contrast")([inputs, contrast])


def steering_output(x):
    """The final Dense 1. Always float32, so a mixed-precision model still outputs float32."""
    from keras import layers

    return layers.Dense(1, dtype="float32", kernel_initializer="zeros", name="steering")(x)


# --- base: the original steering CNN ------------------------------------------------------------


@register("base")
def base(
    input_shape=INPUT_SHAPE, he_init: bool = False, local_contrast: str | None = None, name: str = "base"
) -> keras.Model:
    """Plain VGG-style CNN: 5 conv stages, a Flatten->Dense 256/128/64 head. 865,921 params.

    he_init: He-initialise its convolutions and Dense layers. False keeps Keras' defaults (Glorot),
    as the original work did: its features then reach the head at under 1% of the input's scale
    (docs/models.md). local_contrast: see model_input."""
    import keras
    from keras import layers

    init = "he_normal" if he_init else "glorot_uniform"
    inputs, x = model_input(input_shape, local_contrast)
    for i, (filters, kernel) in enumerate([(64, 5), (64, 3), (64, 3), (128, 3), (128, 3)]):
        x = layers.Conv2D(
            filters, kernel, padding="same", activation="relu", kernel_initializer=init, name=f"conv{i + 1}"
        )(x)
        x = layers.Dropout(0.2)(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    for units in (256, 128, 64):
        x = layers.Dense(units, activation="relu", kernel_initializer=init)(x)
        x = layers.Dropout(0.5)(x)
    outputs = steering_output(x)
    return keras.Model(inputs, outputs, name=name)


@register("base-he")
def base_he(input_shape=INPUT_SHAPE) -> keras.Model:
    """base, He-initialised: the same layers and 865,921 params, its features at the input's scale."""
    return base(input_shape, he_init=True, name="base-he")


# --- EffNet family ------------------------------------------------------------------------------


def depthwise_he_normal(channels: int) -> keras.initializers.Initializer:
    """He-normal for a depthwise kernel. Keras derives a depthwise kernel's fan-in from its shape
    (kh, kw, channels, 1) as kh*kw*channels, but each output sees only kh*kw inputs, so its default
    (Glorot) draws weights about sqrt(channels) too small. EffNet stacks ten depthwise layers: with
    the default, the features reaching Flatten were 1e-11 of the input's scale and the model could
    not leave a constant output (docs/models.md). Scaling by `channels` gives 2 / (kh*kw)."""
    import keras

    return keras.initializers.VarianceScaling(
        scale=2.0 * channels, mode="fan_in", distribution="truncated_normal"
    )


def effnet_block(
    x,
    ch_in: int,
    ch_out: int,
    batch_norm: bool = False,
    dropout: float = 0.25,
    activation: str = "leaky_relu",
    he_init: bool = True,
    norm_first: bool = False,
):
    """EffNet's block: a 1x1 squeeze, a separable 1x3 / 3x1 depthwise pair with the pooling
    between them, and a (2,1) conv striding along the width, so both axes halve.
    Convolutions carry no bias: they are followed by the activation (and BN in the -bn variant).

    activation: "leaky_relu" (slope 0.3, layers of its own) for the steering EffNets; "relu" for the
    MNIST EffNet, inside the conv layers as its published figures (.h5 size included) were measured.
    he_init: He-initialise every convolution (depthwise ones on their true fan-in) so the signal
    keeps its scale through the blocks, which the steering EffNets need; False leaves all but the
    1x1 squeeze at Keras' default (Glorot), as the MNIST EffNet was measured with.
    norm_first: BN between each convolution and its activation instead of after the activation.
    The LiteRT converter folds a BN that directly follows a convolution into it; one after the
    activation stays two ops (a multiply and an add) in the exported graph."""
    from keras import layers

    if activation not in ("leaky_relu", "relu"):
        raise OptionError(f"activation must be 'leaky_relu' or 'relu', not {activation!r}")
    inside = "relu" if activation == "relu" else None  # the activation the conv layers apply
    conv_init = "he_normal" if he_init else "glorot_uniform"

    def act(y):
        if batch_norm and norm_first:
            y = layers.BatchNormalization()(y)
        if activation == "leaky_relu":
            y = layers.LeakyReLU(negative_slope=0.3)(y)
        return layers.BatchNormalization()(y) if batch_norm and not norm_first else y

    def conv(filters, kernel, **kw):
        return layers.Conv2D(filters, kernel, padding="same", use_bias=False, activation=inside, **kw)

    def depthwise(kernel):
        init = depthwise_he_normal(ch_in) if he_init else "glorot_uniform"
        return layers.DepthwiseConv2D(
            kernel, padding="same", use_bias=False, activation=inside, depthwise_initializer=init
        )

    x = act(conv(ch_in, 1, kernel_initializer="he_normal")(x))
    x = act(depthwise((1, 3))(x))
    x = layers.MaxPooling2D(pool_size=(2, 1), strides=(2, 1))(x)
    x = act(depthwise((3, 1))(x))
    x = act(conv(ch_out, (2, 1), strides=(1, 2), kernel_initializer=conv_init)(x))
    return layers.Dropout(dropout)(x) if dropout else x


def dense_head(x, units: tuple[int, ...], dropout: float = 0.5, norm_first: bool = False):
    """The EffNet write-up's head: Dense (he_normal) + LeakyReLU + BN + Dropout (0.5 there) per layer
    (with norm_first, BN before the LeakyReLU: see effnet_block)."""
    from keras import layers

    for n in units:
        x = layers.Dense(n, kernel_initializer="he_normal")(x)
        if norm_first:
            x = layers.BatchNormalization()(x)
        x = layers.LeakyReLU(negative_slope=0.3)(x)
        if not norm_first:
            x = layers.BatchNormalization()(x)
        x = layers.Dropout(dropout)(x)
    return x


def effnet_family(
    name: str,
    input_shape,
    blocks,
    head: tuple[int, ...],
    batch_norm: bool = False,
    squeeze: int | None = None,
    block_dropout: float = 0.25,
    head_dropout: float = 0.5,
    input_pool: int = 1,
    norm_first: bool = False,
    local_contrast: str | None = None,
) -> keras.Model:
    """EffNet blocks, then an optional 1x1 `squeeze` conv that thins the last feature map before
    Flatten (the Flatten->Dense 256 layer holds 83% of EffNet's weights), then the dense head.

    input_pool > 1 lowers the input resolution inside the model: the mean of each input_pool x
    input_pool block of the input, what an INTER_AREA resize of it would give. It lives in the
    model because a run's Preprocessing (its input size) is one for all the models it trains, so
    a model cannot ask the pipeline for a smaller input; as pilotnet resizes inside. count_macs
    leaves the pooling out (input_pixels x 3 additions: 49,152 at 128x128). local_contrast: see
    model_input."""
    import keras
    from keras import layers

    inputs, x = model_input(input_shape, local_contrast)
    if input_pool > 1:
        x = layers.AveragePooling2D(input_pool, name="input_pool")(x)
    for ch_in, ch_out in blocks:
        x = effnet_block(
            x, ch_in, ch_out, batch_norm=batch_norm, dropout=block_dropout, norm_first=norm_first
        )
    if squeeze:
        x = layers.Conv2D(squeeze, 1, kernel_initializer="he_normal", name="squeeze")(x)
        x = layers.LeakyReLU(negative_slope=0.3)(x)
    x = layers.Flatten()(x)
    x = dense_head(x, head, dropout=head_dropout, norm_first=norm_first)
    outputs = steering_output(x)
    return keras.Model(inputs, outputs, name=name)


EFFNET_BLOCKS = ((32, 64), (32, 64), (32, 64), (64, 128), (64, 128))
# Half-width first block: at 128x128 it costs most of EffNet's MACs.
SLIM_BLOCKS = ((16, 32), (32, 64), (32, 64), (64, 96), (64, 96))


@register("effnet")
def effnet(input_shape=INPUT_SHAPE, local_contrast: str | None = None, name: str = "effnet") -> keras.Model:
    """EffNet-slimmed base, as originally trained (block BN switched off). 630,433 params.
    local_contrast: see model_input."""
    return effnet_family(name, input_shape, EFFNET_BLOCKS, head=(256, 128, 64), local_contrast=local_contrast)


@register("effnet-bn")
def effnet_bn(input_shape=INPUT_SHAPE) -> keras.Model:
    """EffNet with BatchNormalization after every activation inside the blocks, as described."""
    return effnet_family("effnet-bn", input_shape, EFFNET_BLOCKS, head=(256, 128, 64), batch_norm=True)


@register("effnet-slim")
def effnet_slim(
    input_shape=INPUT_SHAPE,
    width: float = 1.0,
    blocks=SLIM_BLOCKS,
    squeeze: int = 16,
    head: int = 64,
    input_pool: int = 1,
    norm_first: bool = False,
    local_contrast: str | None = None,
    name: str = "effnet-slim",
) -> keras.Model:
    """Slimmer EffNet: half-width first block, a 1x1 squeeze to 16 channels before Flatten (keeps
    where the road is, unlike global pooling) and a 64-unit head. >10x fewer params and MACs than base.

    Its knobs slim it further (the slimming family below): the block channels times `width`,
    `blocks` (fewer of them: depth), the `squeeze` channels and the Dense `head` units, the input
    average-pooled by `input_pool` (resolution, see effnet_family), and `norm_first` (BN before
    each activation, where the LiteRT converter folds it: see effnet_block), `local_contrast` (see
    model_input); `name` is the model's.
    `build("effnet-slim", width=0.75)` tries a step without registering it."""
    return effnet_family(
        name,
        input_shape,
        scale_width(blocks, width),
        head=(head,),
        batch_norm=True,
        squeeze=squeeze,
        block_dropout=0.1,
        head_dropout=0.1,
        input_pool=input_pool,
        norm_first=norm_first,
        local_contrast=local_contrast,
    )


def scale_width(blocks, multiplier: float) -> tuple[tuple[int, int], ...]:
    """Every block's (ch_in, ch_out) times `multiplier` (at least one channel each)."""
    return tuple((max(1, round(a * multiplier)), max(1, round(b * multiplier))) for a, b in blocks)


@register("effnet-gap")
def effnet_gap(input_shape=INPUT_SHAPE) -> keras.Model:
    """EffNet blocks with a global-average-pooling head: the smallest head possible, but pooling
    throws away *where* the road is, which steering needs; kept as the cautionary variant."""
    import keras
    from keras import layers

    inputs = keras.Input(input_shape, name="frame")
    x = inputs
    for ch_in, ch_out in SLIM_BLOCKS:
        x = effnet_block(x, ch_in, ch_out, batch_norm=True)
    x = layers.GlobalAveragePooling2D()(x)
    x = dense_head(x, (64,))
    outputs = steering_output(x)
    return keras.Model(inputs, outputs, name="effnet-gap")


# --- PilotNet: the field's yardstick -----------------------------------------------------------


@register("pilotnet")
def pilotnet(
    input_shape=INPUT_SHAPE, local_contrast: str | None = None, name: str = "pilotnet"
) -> keras.Model:
    """NVIDIA's PilotNet (Bojarski et al. 2016): 5 convs, Dense 100/50/10. A Resizing layer maps
    our 128x128 input to NVIDIA's 66x200, so every layer after it is exactly theirs (252,219 params).
    local_contrast: see model_input."""
    import keras
    from keras import layers

    inputs, x = model_input(input_shape, local_contrast)
    x = layers.Resizing(66, 200, interpolation="bilinear")(x)
    # He initialisation: with Keras' default (Glorot) the ReLU activations shrink layer by layer to
    # about 0.01, and Adam's first steps on the biases (1e-3 each) switched the whole Dense 10
    # layer off, leaving a constant output (docs/models.md).
    for filters, kernel, stride in [(24, 5, 2), (36, 5, 2), (48, 5, 2), (64, 3, 1), (64, 3, 1)]:
        x = layers.Conv2D(filters, kernel, strides=stride, activation="relu", kernel_initializer="he_normal")(
            x
        )
    x = layers.Flatten()(x)
    for units in (100, 50, 10):
        x = layers.Dense(units, activation="relu", kernel_initializer="he_normal")(x)
    outputs = steering_output(x)
    return keras.Model(inputs, outputs, name=name)


# --- the slimming family: effnet-slim slimmed one step at a time ------------------------------


# effnet-slim's blocks without the repeat of the second, then also of the last. Depth only slims
# together with the resolution: every block halves both axes, so at 128x128 a block fewer leaves an
# 8x8 map, not 4x4, for Flatten, and the head's Dense layer grows by more weights than the block held.
SLIM_D4 = SLIM_BLOCKS[:2] + SLIM_BLOCKS[3:]
SLIM_D3 = SLIM_D4[:3]


def variant(name: str, builder: Callable[..., keras.Model] = effnet_slim, **knobs) -> None:
    """Register `name`: `builder` (the slimming family's base, effnet-slim, unless another is
    given) with some of its knobs set, so a variant is one line."""
    register(name)(functools.partial(builder, name=name, **knobs))


# Each step slims the one before it (docs/models.md, "The slimming family"):
variant("effnet-w050", width=0.5)  # every block half as wide
variant("effnet-w050-h32", width=0.5, squeeze=8, head=32)  # the squeeze and the Dense head halved
# the input average-pooled to 64x64, and a block fewer to keep Flatten's 4x4 map
variant("effnet-w050-h32-r64", width=0.5, squeeze=8, head=32, blocks=SLIM_D4, input_pool=2)
variant("effnet-w025-h32-r64", width=0.25, squeeze=8, head=32, blocks=SLIM_D4, input_pool=2)  # quarter width
# 32x32 with a block fewer again, and BN folded at export: an int8 file under 32 KiB
variant("effnet-tiny", width=0.25, squeeze=8, head=32, blocks=SLIM_D3, input_pool=4, norm_first=True)

# Local contrast at the input (docs/evaluation.md, "Local contrast at the input"): the frame's
# local contrast instead of the frame, or beside it.
variant("pilotnet-lcn", pilotnet, local_contrast="only")
variant("pilotnet-rawlcn", pilotnet, local_contrast="beside")
variant("effnet-lcn", effnet, local_contrast="only")
variant("effnet-slim-lcn", local_contrast="only")
variant("base-lcn", base, local_contrast="only")

# effnet-slim first, then each step above: parameters and MACs fall all along.
SLIMMING_FAMILY = (
    "effnet-slim",
    "effnet-w050",
    "effnet-w050-h32",
    "effnet-w050-h32-r64",
    "effnet-w025-h32-r64",
    "effnet-tiny",
)


# --- counting -----------------------------------------------------------------------------------


def count_params(model: keras.Model) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return model.count_params(), trainable


def _spatial(shape) -> int:
    out = 1
    for d in shape[1:-1]:
        out *= int(d)
    return out


def count_macs(model: keras.Model) -> int:
    """Forward multiply-accumulates per frame of the conv and dense layers (the work that scales;
    activations, pooling and BN are a few per element and left out, as is usual)."""
    import keras
    from keras import layers

    macs = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            macs += count_macs(layer)
        elif isinstance(layer, layers.DepthwiseConv2D):
            kh, kw = layer.kernel_size
            cin = int(layer.input.shape[-1])
            macs += _spatial(layer.output.shape) * kh * kw * cin * layer.depth_multiplier
        elif isinstance(layer, layers.SeparableConv2D):
            kh, kw = layer.kernel_size
            cin, cout = int(layer.input.shape[-1]), int(layer.output.shape[-1])
            dm = layer.depth_multiplier
            macs += _spatial(layer.output.shape) * (kh * kw * cin * dm + cin * dm * cout)
        elif isinstance(layer, layers.Conv2D):
            kh, kw = layer.kernel_size
            cin, cout = int(layer.input.shape[-1]), int(layer.output.shape[-1])
            macs += _spatial(layer.output.shape) * kh * kw * (cin // layer.groups) * cout
        elif isinstance(layer, layers.Dense):
            macs += int(layer.input.shape[-1]) * layer.units
    return macs


# --- training set-up and files ------------------------------------------------------------------


def compile_for_training(model: keras.Model, lr: float = 1e-3, jit_compile: bool = False) -> None:
    """Adam + MSE. The loss is an object, not the string "mse": Keras 3 cannot deserialise the
    string from an .h5 file's training config. XLA is off by default: on CPU its compile time
    (a minute and more here) outweighs what it saves on short runs."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr),
        loss=keras.losses.MeanSquaredError(),
        metrics=[keras.metrics.MeanAbsoluteError(name="mae")],
        jit_compile=jit_compile,
    )


# --- command line -------------------------------------------------------------------------------


def summary_rows(names: list[str] | None = None, litert: bool = False) -> list[dict]:
    """One row per model (every registered one by default): params, trainable, MACs, and with
    `litert` the bytes of its LiteRT files (litert_sizes)."""
    import keras

    rows = []
    for name in names or MODELS:
        model = build(name)
        total, trainable = count_params(model)
        row = {"model": name, "params": total, "trainable": trainable, "macs": count_macs(model)}
        if litert:
            row["litert_bytes"] = litert_sizes(model)
        rows.append(row)
        keras.backend.clear_session()
    return rows


def litert_sizes(model: keras.Model, seed: int = 0) -> dict[str, int]:
    """Bytes of `model` as a LiteRT float32, float16 and int8 file (driving.modelio.to_tflite, the
    project's one conversion; without the record a saved file adds, about 1.5 KiB for a trained
    model). Its BatchNormalization layers are first moved off the identity, as training leaves
    them: at initialisation BN is the identity, the converter drops it, and the file would come
    out smaller than a trained model's. `model`'s weights are changed."""
    from keras import layers

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            shape = layer.gamma.shape
            layer.gamma.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.1, shape).astype("float32"))
            layer.moving_mean.assign(rng.normal(0, 0.1, shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
    calibration = rng.uniform(-0.5, 0.5, (8, *model.input_shape[1:])).astype("float32")
    return {kind: len(to_tflite(model, kind, calibration)) for kind in TFLITE_KINDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m driving.models",
        description="List the registered steering models (parameters, forward MACs per frame), "
        "or save an untrained one.",
    )
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    parser.add_argument(
        "--model",
        action="append",
        choices=list(MODELS),
        metavar="NAME",
        help="list only this model (repeatable; default: every registered one)",
    )
    parser.add_argument(
        "--litert",
        action="store_true",
        help="also convert each model to LiteRT float32, float16 and int8 and give the file sizes "
        "(a few seconds per model and kind)",
    )
    sub = parser.add_subparsers(dest="command")
    save = sub.add_parser("save", help="write an untrained model (for smoke tests)")
    save.add_argument("name", choices=sorted(MODELS), help="registered model name")
    save.add_argument("path", type=Path, help="output file, .keras or .h5")
    args = parser.parse_args(argv)

    if args.command == "save":
        if args.path.suffix not in (".keras", ".h5"):
            parser.error(f"{args.path}: the file name must end in .keras or .h5")
        model = build(args.name)
        compile_for_training(model)
        try:
            save_keras(
                model,
                args.path,
                ModelInfo(model=args.name, checkpoint=Checkpoint(kind="unknown", note="untrained")),
            )
        except OSError as e:
            print(f"driving.models: cannot write {args.path}: {e.strerror or e}", file=sys.stderr)
            return 1
        print(f"wrote untrained {args.name} to {args.path}")
        return 0
    rows = summary_rows(args.model, litert=args.litert)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    base = next((r for r in rows if r["model"] == "base"), None) or summary_rows(["base"])[0]
    name_width = max(len(r["model"]) for r in rows)
    header = f"{'model':<{name_width}} {'params':>10} {'trainable':>10} {'MACs/frame':>13} "
    header += f"{'params/base':>12} {'MACs/base':>10}"
    if args.litert:
        header += "".join(f" {kind + ' KiB':>12}" for kind in rows[0]["litert_bytes"])
    print(header)
    for r in rows:
        line = f"{r['model']:<{name_width}} {r['params']:>10,} {r['trainable']:>10,} {r['macs']:>13,} "
        line += f"{r['params'] / base['params']:>12.3f} {r['macs'] / base['macs']:>10.3f}"
        if args.litert:
            line += "".join(f" {size / 1024:>12.1f}" for size in r["litert_bytes"].values())
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
