"""Where a steering model looks: saliency maps, overlaid on the camera view, and measured.

Two methods, one interface: a callable that takes a batch of model inputs (N, H, W, 3), float32
as driving.preprocess makes them, and returns maps (N, H, W) in [0, 1], 1 where the model looks
most.

    vbp         VisualBackProp (Bojarski et al. 2016): the channel mean of every ReLU-family
                feature map, multiplied together from the deepest to the shallowest, the running
                mask spread back through the layers between them by a transposed convolution of
                ones with each layer's kernel and stride (as the paper does). One forward pass.
                It shows which parts of the frame light up the features that reach the head;
                it never looks at the head, so it cannot say which of them the steering uses.
    smoothgrad  SmoothGrad (Smilkov et al. 2017): the mean |d steering / d input| over noisy
                copies of the frame. It goes through the whole network, head included, so it
                shows which pixels move the steering; it costs SMOOTHGRAD_SAMPLES forward and
                backward passes. Chosen over Grad-CAM, whose map has the last conv layer's
                resolution (4x4 for effnet-slim, 8x8 for base): too coarse to tell a road edge
                from the road beside it, which is the question asked here.

A map is placed back on the camera frame over the model's crop rows, with the geometry stored in
the model file (to_frame), drawn over it as a heat map (overlay), and scored against the headless
simulator's labels (mass_shares): the share of its mass that falls on road and road edge.
probe_frames() is the fixed, seeded set of frames from unseen tracks every model is scored on.

    python -m driving.saliency models/effnet.keras --track lake [--frames 8] [--method smoothgrad]
    python -m driving.saliency models/effnet.keras --data data/sim-lake --out runs/saliency

TensorFlow is imported only after the arguments are parsed: --help is instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from driving import cli
from driving.config import Preprocessing
from driving.sim.world import EDGE, LABEL_NAMES, OFF_ROAD, ROAD

RELU_FAMILY = ("relu", "relu6", "leaky_relu", "elu")
SMOOTHGRAD_SAMPLES = 32
SMOOTHGRAD_NOISE = 0.15  # noise sd as a share of the input range (Smilkov et al.: 10-20% works)
BATCH = 16  # frames per forward pass: bounds the feature maps held at once
OVERLAY_ALPHA = 0.7  # the heat map's weight where saliency is 1 (0 shows the frame itself)
HEAT_MAP = "turbo"
GRID_COLUMNS = 4  # images per row of the command line's grid
DEFAULT_FRAMES = 8  # the command line's, from a recording or along a track
PROBES_PER_DRIVE = 3  # scoring frames per drive of a suite
LABEL_TINTS = {ROAD: (40, 110, 255), EDGE: (255, 220, 0)}  # the labels row of a grid

SaliencyMethod = Callable[[np.ndarray], np.ndarray]


def _normalise(maps: np.ndarray) -> np.ndarray:
    """Each map divided by its maximum: [0, 1], zero stays zero (an all-zero map stays zero)."""
    peak = maps.reshape(len(maps), -1).max(axis=1)
    return (maps / np.where(peak > 0, peak, 1)[:, None, None]).astype(np.float32)


# --- VisualBackProp -------------------------------------------------------------------------------


def _is_feature_map(layer) -> bool:
    """A rank-4 ReLU-family output: an activation layer, or a convolution with one inside."""
    from keras import activations, layers

    if len(layer.output.shape) != 4:
        return False
    if isinstance(layer, (layers.ReLU, layers.LeakyReLU, layers.ELU, layers.PReLU)):
        return True
    activation = getattr(layer, "activation", None)
    return activation is not None and activations.serialize(activation) in RELU_FAMILY


def _conv_chain(model) -> list:
    """The layers from the input to the last one with a rank-4 output (where Flatten or pooling
    ends the convolutional part). They must form a chain, each fed by the one before, as every
    registered model's do; a branching model is refused rather than misread."""
    from keras import layers

    chain, previous = [], model.inputs[0]
    for layer in model.layers:
        if isinstance(layer, layers.InputLayer):
            continue
        if len(layer.output.shape) != 4:
            break
        if layer.input is not previous:
            raise ValueError(f"{model.name}: layer {layer.name} is not fed by the layer before it")
        chain.append(layer)
        previous = layer.output
    return chain


def _transposed_ones(mask: np.ndarray, layer) -> np.ndarray:
    """Spread each output pixel of a convolution or pooling `layer` over the input pixels it read:
    a transposed convolution with a kernel of ones and the layer's stride, dilation and padding
    (TensorFlow's 'same': the larger half of the padding at the bottom and right)."""
    kh, kw = getattr(layer, "kernel_size", None) or layer.pool_size
    sh, sw = layer.strides
    dh, dw = getattr(layer, "dilation_rate", (1, 1))
    n, out_h, out_w = mask.shape
    in_h, in_w = layer.input.shape[1:3]
    reach_h, reach_w = (out_h - 1) * sh + (kh - 1) * dh + 1, (out_w - 1) * sw + (kw - 1) * dw + 1
    top = max(reach_h - in_h, 0) // 2 if layer.padding == "same" else 0
    left = max(reach_w - in_w, 0) // 2 if layer.padding == "same" else 0
    canvas = np.zeros((n, max(reach_h, top + in_h), max(reach_w, left + in_w)), np.float32)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + (out_h - 1) * sh + 1, sh)
            cols = slice(j * dw, j * dw + (out_w - 1) * sw + 1, sw)
            canvas[:, rows, cols] += mask
    return canvas[:, top : top + in_h, left : left + in_w]


def _back_through(layer, mask: np.ndarray) -> np.ndarray:
    """A mask over `layer`'s output, carried back to its input's size."""
    import cv2
    from keras import layers

    in_h, in_w = layer.input.shape[1:3]
    if isinstance(
        layer,
        (
            layers.Conv2D,
            layers.DepthwiseConv2D,
            layers.SeparableConv2D,
            layers.MaxPooling2D,
            layers.AveragePooling2D,
        ),
    ):
        return _transposed_ones(mask, layer)
    if isinstance(layer, layers.Cropping2D):  # nothing outside the crop reached the layers above
        (top, bottom), (left, right) = layer.cropping
        return np.pad(mask, ((0, 0), (top, bottom), (left, right)))
    if mask.shape[1:] == (in_h, in_w):  # dropout, normalisation, activations
        return mask
    # Anything else that changes the size (PilotNet's Resizing): resize, as the paper allows.
    return np.stack([cv2.resize(m, (in_w, in_h), interpolation=cv2.INTER_LINEAR) for m in mask])


class VisualBackProp:
    """VisualBackProp for any Keras model whose convolutional part is a chain of layers. The
    feature maps are found by what they are (ReLU-family outputs of rank 4), not by name."""

    def __init__(self, model):
        from driving import tfsetup

        tfsetup.setup()

        import keras
        import tensorflow as tf

        chain = _conv_chain(model)
        deepest = max((i for i, layer in enumerate(chain) if _is_feature_map(layer)), default=None)
        if deepest is None:
            raise ValueError(f"{model.name}: no ReLU-family feature maps to visualise")
        self.layers = chain[: deepest + 1]
        self.maps = [layer for layer in self.layers if _is_feature_map(layer)]
        # The channel mean of what a ReLU passes: a LeakyReLU's damped negative part would make
        # the product's sign flip from layer to layer.
        means = [keras.ops.mean(keras.ops.relu(layer.output), axis=-1) for layer in self.maps]
        features = keras.Model(model.inputs, means)
        frames = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)  # any batch: one trace
        self._means = tf.function(lambda x: features(x, training=False), input_signature=[frames])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        means = dict(zip(self.maps, (_normalise(m.numpy()) for m in self._means(x)), strict=True))
        # Each mean is divided by its maximum: a pure rescaling (the final normalisation removes
        # it), which keeps a product of twenty maps (the EffNets) far from float32's underflow.
        mask = np.ones_like(means[self.maps[-1]])
        for layer in reversed(self.layers):
            if layer in means:
                mask = mask * means[layer]
            mask = _back_through(layer, mask)
        return _normalise(mask)


# --- SmoothGrad -----------------------------------------------------------------------------------


class SmoothGrad:
    """SmoothGrad: |d steering / d input| averaged over `samples` copies of the input with
    Gaussian noise of sd `noise` (the same seeded noise for every frame: a frame's map does not
    depend on which frames came before it), then over the colour channels."""

    def __init__(
        self, model, samples: int = SMOOTHGRAD_SAMPLES, noise: float = SMOOTHGRAD_NOISE, seed: int = 0
    ):
        from driving import tfsetup

        tfsetup.setup()
        import tensorflow as tf

        from driving.tfsetup import quiet_stderr

        self.samples, self.noise, self.seed = samples, noise, seed

        @tf.function(reduce_retracing=True)
        def gradient_magnitude(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                steering = model(x, training=False)
            return tf.reduce_mean(tf.abs(tape.gradient(steering, x)), axis=[0, 3])

        self._gradient_magnitude = gradient_magnitude
        # Trace now, quietly: TensorFlow's graph optimiser logs a harmless "remapper failed"
        # error from C++ for the gradient of the BatchNorm EffNets (it skips that rewrite).
        with quiet_stderr():
            gradient_magnitude(np.zeros((samples, *model.input_shape[1:]), np.float32))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        noise = np.random.default_rng(self.seed).normal(0, self.noise, (self.samples, *x.shape[1:]))
        noise = noise.astype(np.float32)
        return _normalise(np.stack([self._gradient_magnitude(frame + noise).numpy() for frame in x]))


METHODS: dict[str, Callable[..., SaliencyMethod]] = {"vbp": VisualBackProp, "smoothgrad": SmoothGrad}


# --- on the camera frame --------------------------------------------------------------------------


def to_frame(maps: np.ndarray, geometry: Preprocessing) -> np.ndarray:
    """Maps over the model's input (N, h, w) -> over the camera frame (N, H, W): resized onto the
    crop rows the input was made from, zero on the rows the model never sees."""
    import cv2

    crop_height = geometry.crop_bottom - geometry.crop_top
    out = np.zeros((len(maps), geometry.frame_height, geometry.frame_width), np.float32)
    for i, m in enumerate(maps):
        crop = cv2.resize(m, (geometry.frame_width, crop_height), interpolation=cv2.INTER_LINEAR)
        out[i, geometry.crop_top : geometry.crop_bottom] = np.clip(crop, 0, 1)
    return out


def frame_saliency(method: SaliencyMethod, frames: np.ndarray, geometry: Preprocessing) -> np.ndarray:
    """Saliency of camera frames (N, H, W, 3 RGB uint8) over those frames: (N, H, W) in [0, 1].
    Raises FrameError for a frame of another size than the model's geometry."""
    from driving.preprocess import check_frame, preprocess

    for i, frame in enumerate(frames):
        check_frame(frame, f"frame {i}", geometry)
    maps = [method(preprocess(frames[i : i + BATCH], geometry)) for i in range(0, len(frames), BATCH)]
    return to_frame(np.concatenate(maps), geometry)


@cache
def _heat_colours() -> np.ndarray:
    import matplotlib

    return np.round(matplotlib.colormaps[HEAT_MAP](np.arange(256))[:, :3] * 255).astype(np.float32)


def overlay(frame: np.ndarray, saliency: np.ndarray, geometry: Preprocessing) -> np.ndarray:
    """The frame with the heat map blended in where the model looks (the more, the stronger, so
    what it ignores shows as it is) and the crop rows outlined."""
    import cv2

    heat = _heat_colours()[np.round(saliency * 255).astype(np.uint8)]
    # The square root lifts the faint part of a peaky map (VisualBackProp's products are) into view.
    alpha = OVERLAY_ALPHA * np.sqrt(saliency)[..., None]
    out = np.round(frame * (1 - alpha) + heat * alpha).astype(np.uint8)
    bottom_right = (geometry.frame_width - 1, geometry.crop_bottom - 1)
    cv2.rectangle(out, (0, geometry.crop_top), bottom_right, (255, 255, 255), 1)
    return out


def label_overlay(frame: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The frame with road and road-edge pixels tinted (the grids' reference row)."""
    out = frame.astype(np.float32)
    for label, tint in LABEL_TINTS.items():
        out[labels == label] = 0.5 * out[labels == label] + 0.5 * np.float32(tint)
    return np.round(out).astype(np.uint8)


def save_png(rgb: np.ndarray, path: str | Path, colours: int | None = None) -> Path:
    """An RGB uint8 image as a PNG, atomically; with `colours`, as a palette of that many."""
    from PIL import Image

    from driving.files import atomic_path

    image = Image.fromarray(rgb)
    if colours:
        image = image.quantize(colours, method=Image.Quantize.MEDIANCUT)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", optimize=True)
    return Path(path)


def save_grid(
    rows: Sequence[Sequence[np.ndarray]],
    path: str | Path,
    row_labels: Sequence[str] = (),
    titles: Sequence[Sequence[str]] = (),
) -> Path:
    """Images in a grid, rows top to bottom, at one pixel of PNG per pixel of image; a label left
    of each row and a title over each image (`titles` row by row), where given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(len(row) for row in rows)
    height, width = rows[0][0].shape[:2]
    dpi = 100
    fig, axes = plt.subplots(
        len(rows),
        columns,
        figsize=(columns * width / dpi + 0.6, len(rows) * (height / dpi + 0.3)),
        dpi=dpi,
        squeeze=False,
        layout="constrained",
    )
    for i, row in enumerate(rows):
        for j, ax in enumerate(axes[i]):
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(row):
                ax.imshow(row[j])
            else:
                ax.set_axis_off()
            if j == 0 and i < len(row_labels):
                ax.set_ylabel(row_labels[i], fontsize=9)
            if i < len(titles) and j < len(titles[i]):
                ax.set_title(titles[i][j], fontsize=8)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    # 256 colours are plenty for frames and heat maps, and make the file about a quarter the size.
    return save_png(rgb, path, colours=256)


# --- measuring where it looks ---------------------------------------------------------------------


def mass_shares(saliency: np.ndarray, labels: np.ndarray, geometry: Preprocessing) -> np.ndarray:
    """Share of one map's mass within the crop rows on each label (indexed by the labels of
    driving.sim.world); NaN everywhere for an all-zero map. With a map of ones it is each label's
    share of the crop's area: the score a model that looks everywhere alike would get."""
    crop = slice(geometry.crop_top, geometry.crop_bottom)
    mass = np.bincount(labels[crop].ravel(), saliency[crop].ravel(), minlength=len(LABEL_NAMES))
    total = mass.sum()
    return mass / total if total > 0 else np.full(len(LABEL_NAMES), np.nan)


def road_score(shares: np.ndarray) -> float:
    """The score: the share of saliency on road surface and road edges (markings included)."""
    return float(shares[ROAD] + shares[EDGE])


@dataclass(frozen=True)
class Probe:
    """One frame to show or score: the camera frame and, from the simulator, what each of its
    pixels shows (None for a recorded frame)."""

    name: str
    frame: np.ndarray  # RGB uint8
    labels: np.ndarray | None = None  # uint8 labels of driving.sim.world, the frame's size


def probe_frames(suite: str = "quick", per_drive: int = PROBES_PER_DRIVE, seed: int = 0) -> list[Probe]:
    """A fixed, seeded set of frames from tracks no recording drives: `per_drive` poses spread
    along each drive of the evaluation suite, somewhere in the lane (up to a quarter of the road's
    width off its centre line, up to 0.1 rad off its heading), rendered in that drive's world
    under its conditions by the centre camera. The same frames for every model."""
    from driving.evaluation.registry import SUITES
    from driving.sim.camera import Camera
    from driving.sim.simulator import CAMERA_SPECS
    from driving.sim.world import World

    rng = np.random.default_rng(seed)
    probes = []
    for drive in SUITES[suite].drives:
        track = drive.track()
        world = World(track, seed=drive.conditions_seed, conditions=drive.conditions())
        camera = Camera(world, CAMERA_SPECS["center"], drive.conditions_seed)
        for s in (rng.uniform() + np.arange(per_drive)) / per_drive * track.length:
            x, y = track.point_at(s, rng.uniform(-0.25, 0.25) * track.width)
            heading = track.heading_at(s) + rng.uniform(-0.1, 0.1)
            name = f"{drive.name} at {s:.0f} m"
            probes.append(Probe(name, camera.render(x, y, heading), camera.render_labels(x, y, heading)))
    return probes


def track_probes(spec: str, count: int, seed: int = 0) -> list[Probe]:
    """`count` frames from a track's centre line, evenly spaced from its start, with labels."""
    from driving.sim.camera import Camera
    from driving.sim.simulator import CAMERA_SPECS
    from driving.sim.track import get_track
    from driving.sim.world import World

    track = get_track(spec, seed)
    camera = Camera(World(track, seed=seed), CAMERA_SPECS["center"], seed)
    probes = []
    for s in np.arange(count) * track.length / count:
        x, y = track.point_at(s)
        heading = track.heading_at(s)
        frame, labels = camera.render(x, y, heading), camera.render_labels(x, y, heading)
        probes.append(Probe(f"{track.name} at {s:.0f} m", frame, labels))
    return probes


def recording_probes(folder: Path, count: int) -> list[Probe]:
    """`count` center frames spread evenly through a recording (no labels: nobody knows them)."""
    from driving.data.reader import load_recordings
    from driving.preprocess import read_frame

    rows = load_recordings([folder]).frames
    picked = rows.iloc[np.linspace(0, len(rows) - 1, min(count, len(rows))).round().astype(int)]
    return [Probe(f"row {r.row}", read_frame(r.center)) for r in picked.itertuples()]


def score(maps: np.ndarray, probes: Sequence[Probe], geometry: Preprocessing) -> dict:
    """Where frame-sized `maps` of labelled `probes` fall: per frame and on average, the score
    (road and edge share), the edge share alone, the off-road share, and the chance level (the
    road-and-edge share of the crop's area, what a map that looks everywhere alike scores)."""
    pairs = list(zip(maps, probes, strict=True))
    shares = np.stack([mass_shares(m, p.labels, geometry) for m, p in pairs])
    area = np.stack([mass_shares(np.ones_like(m), p.labels, geometry) for m, p in pairs])
    per_frame = [road_score(s) for s in shares]
    return {
        "score": float(np.nanmean(per_frame)),
        "edge": float(np.nanmean(shares[:, EDGE])),
        "off_road": float(np.nanmean(shares[:, OFF_ROAD])),
        "chance": float(np.mean([road_score(a) for a in area])),
        "per_frame": per_frame,
    }


# --- the command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from driving.evaluation.registry import SUITES

    parser = argparse.ArgumentParser(
        prog="python -m driving.saliency",
        description="Show where a steering model looks: per-frame saliency (VisualBackProp or "
        "SmoothGrad) blended into the camera view, the model's crop outlined, written as PNGs and a "
        "grid. With --track each frame is also scored: the share of the saliency on road and road "
        "edge (docs/saliency.md).",
        epilog="examples: python -m driving.saliency models/effnet.keras --track lake;  "
        "python -m driving.saliency models/base.keras --data data/sim-lake --method smoothgrad",
    )
    parser.add_argument("model", type=Path, help="a .keras or .h5 model (a .tflite has no gradients to read)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--data", type=Path, metavar="DIR", help="a recording: frames spread evenly through it"
    )
    source.add_argument(
        "--track",
        metavar="NAME",
        help="lake, jungle, desert, random or a .json track: frames along its centre line, scored",
    )
    source.add_argument(
        "--suite",
        choices=list(SUITES),
        help="the frames models are scored on (as in the slimming report): poses along each drive of "
        f"an evaluation suite, under its conditions; --frames counts per drive (default {PROBES_PER_DRIVE})",
    )
    parser.add_argument(
        "--frames",
        type=cli.integer(1, 1000),
        help=f"how many frames (default {DEFAULT_FRAMES}; per drive with --suite)",
    )
    parser.add_argument(
        "--method", choices=list(METHODS), default="vbp", help="saliency method (default vbp)"
    )
    parser.add_argument("--seed", type=cli.seed, default=0, help="world seed for --track (default 0)")
    parser.add_argument(
        "--out", type=Path, default=Path("runs/saliency"), help="where the PNGs go (default runs/saliency)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from driving.data.reader import RecordingError
    from driving.files import check_writable_folder
    from driving.modelio import ModelFileError, info_or_default, load_info, load_keras
    from driving.preprocess import FrameError
    from driving.sim.track import TrackError

    try:
        check_writable_folder(args.out, "--out folder")
        load_info(args.model)  # a missing or damaged file is named before any work
        if args.data is not None:
            probes = recording_probes(args.data, args.frames or DEFAULT_FRAMES)
        elif args.track is not None:
            probes = track_probes(args.track, args.frames or DEFAULT_FRAMES, args.seed)
        else:
            probes = probe_frames(args.suite, args.frames or PROBES_PER_DRIVE)
        model, info = load_keras(args.model)
        geometry = info_or_default(info, str(args.model)).preprocessing
        maps = frame_saliency(METHODS[args.method](model), np.stack([p.frame for p in probes]), geometry)
    except (ModelFileError, RecordingError, TrackError, FrameError, OSError, ValueError) as e:
        print(f"saliency: {str(e).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    shown = [overlay(p.frame, m, geometry) for p, m in zip(probes, maps, strict=True)]
    for i, (probe, image) in enumerate(zip(probes, shown, strict=True)):
        path = save_png(image, args.out / f"frame-{i:03d}.png")
        scored = (
            ""
            if probe.labels is None
            else f": road and edge {road_score(mass_shares(maps[i], probe.labels, geometry)):.0%}"
        )
        print(f"{path} {probe.name}{scored}")
    rows = range(0, len(shown), GRID_COLUMNS)
    titles = [[p.name for p in probes[i : i + GRID_COLUMNS]] for i in rows]
    grid = save_grid([shown[i : i + GRID_COLUMNS] for i in rows], args.out / "grid.png", titles=titles)
    print(f"wrote {len(shown)} frames and {grid} ({args.method}, {args.model.name})")
    if probes[0].labels is not None:
        found = score(maps, probes, geometry)
        print(
            f"saliency on road and edge {found['score']:.1%} (edge alone {found['edge']:.1%}; "
            f"a map that looks everywhere alike: {found['chance']:.1%})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
