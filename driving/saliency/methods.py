"""Saliency methods: where a steering model looks, as maps over its input, on the camera frame, and
scored against what each pixel shows.

Two methods, one interface: a callable that takes a batch of model inputs (N, H, W, 3), float32
as driving.preprocess makes them, and returns maps (N, H, W) in [0, 1], 1 where the model looks
most.

    vbp         VisualBackProp (Bojarski et al. 2016): the channel mean of every ReLU-family
                feature map, multiplied together from the deepest to the shallowest, the running
                mask spread back through the layers between them by a transposed convolution of
                ones with each layer's kernel and stride (as the paper does; it counts paths,
                which for the EffNets' strides draws stripes, as their gradients have). One
                forward pass.
                It shows which parts of the frame light up the features that reach the head;
                it never looks at the head, so it cannot say which of them the steering uses
                (faithfulness.py checks whether hiding them moves it).
    smoothgrad  SmoothGrad (Smilkov et al. 2017): the mean |d steering / d input| over noisy
                copies of the frame. It goes through the whole network, head included, so it
                shows which pixels move the steering; it costs SMOOTHGRAD_SAMPLES forward and
                backward passes. Chosen over Grad-CAM, whose map has the last conv layer's
                resolution (4x4 for effnet-slim, 8x8 for base): too coarse to tell a road edge
                from the road beside it, which is the question asked here.

A map is placed back on the camera frame over the model's crop rows, with the geometry stored in
the model file (to_frame, frame_saliency), and scored against the headless simulator's labels
(mass_shares, score): the share of its mass that falls on road and road edge. Drawing it is
draw.py's job; the frames come from frames.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import keras
import numpy as np
import tensorflow as tf
from keras import activations, layers

from driving.config import Preprocessing
from driving.preprocess import check_frame, preprocess
from driving.saliency.frames import Probe
from driving.sim.world import EDGE, LABEL_NAMES, OFF_ROAD, ROAD
from driving.tfsetup import quiet_stderr

RELU_FAMILY = ("relu", "relu6", "leaky_relu", "elu")
SMOOTHGRAD_SAMPLES = 32
SMOOTHGRAD_NOISE = 0.15  # noise sd as a share of the input range (Smilkov et al.: 10-20% works)
BATCH = 16  # frames per forward pass: bounds the feature maps held at once

SaliencyMethod = Callable[[np.ndarray], np.ndarray]


def _normalise(maps: np.ndarray) -> np.ndarray:
    """Each map divided by its maximum: [0, 1], zero stays zero (an all-zero map stays zero)."""
    peak = maps.reshape(len(maps), -1).max(axis=1)
    return (maps / np.where(peak > 0, peak, 1)[:, None, None]).astype(np.float32)


# --- VisualBackProp -------------------------------------------------------------------------------


def _is_feature_map(layer) -> bool:
    """A rank-4 ReLU-family output: an activation layer, or a convolution with one inside."""

    if len(layer.output.shape) != 4:
        return False
    if isinstance(layer, (layers.ReLU, layers.LeakyReLU, layers.ELU, layers.PReLU)):
        return True
    activation = getattr(layer, "activation", None)
    return activation is not None and activations.serialize(activation) in RELU_FAMILY


def _conv_chain(model) -> list:
    """The layers from the input to the last one with a rank-4 output (where Flatten or pooling
    ends the convolutional part). They must form a chain, each fed by the one before, as every
    registered model's do, except that a Concatenate may stack maps of the chain so far (the
    frame beside its local contrast); any other branching model is refused rather than misread."""

    chain, previous = [], model.inputs[0]
    seen = [previous]
    for layer in model.layers:
        if isinstance(layer, layers.InputLayer):
            continue
        if len(layer.output.shape) != 4:
            break
        stacked = isinstance(layer, layers.Concatenate) and all(
            any(t is s for s in seen) for t in layer.input
        )
        if layer.input is not previous and not stacked:
            raise ValueError(f"{model.name}: layer {layer.name} is not fed by the layer before it")
        chain.append(layer)
        previous = layer.output
        seen.append(previous)
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
    if isinstance(layer, layers.Concatenate):  # maps of one size, stacked: every pixel stays put
        return mask
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
    feature maps are found by what they are (ReLU-family outputs of rank 4), not by name.

    The transposed convolutions of ones count paths: where the feature maps are alike everywhere,
    the map is how many routes lead from each input pixel through the chain, the input gradient of
    the same layers with every weight one. EffNet's width-1 kernel at stride (1, 2), after a
    (1, 3) depthwise, reads odd columns by two routes and even ones by one, so its maps are
    striped; its trained steering's own gradient alternates over the columns in the same pattern
    (docs/saliency.md), so the stripes are the model's. Spreading by averaging instead, which
    keeps uniform features uniform, lowered the faithfulness check's ratio on every trained model
    measured."""

    def __init__(self, model: keras.Model):
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
        outs = self._means(x)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]  # a model of one feature map
        means = dict(zip(self.maps, (_normalise(m.numpy()) for m in outs), strict=True))
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
        self,
        model: keras.Model,
        samples: int = SMOOTHGRAD_SAMPLES,
        noise: float = SMOOTHGRAD_NOISE,
        seed: int = 0,
    ):
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
    crop_height = geometry.crop_bottom - geometry.crop_top
    out = np.zeros((len(maps), geometry.frame_height, geometry.frame_width), np.float32)
    for i, m in enumerate(maps):
        crop = cv2.resize(m, (geometry.frame_width, crop_height), interpolation=cv2.INTER_LINEAR)
        out[i, geometry.crop_top : geometry.crop_bottom] = np.clip(crop, 0, 1)
    return out


def input_saliency(
    method: SaliencyMethod, frames: np.ndarray, geometry: Preprocessing
) -> tuple[np.ndarray, np.ndarray]:
    """Camera frames (N, H, W, 3 RGB uint8) -> (the model inputs made from them, their saliency
    over those inputs (N, h, w) in [0, 1]). Raises FrameError for a frame of another size than the
    model's geometry."""
    for i, frame in enumerate(frames):
        check_frame(frame, f"frame {i}", geometry)
    x = np.concatenate([preprocess(frames[i : i + BATCH], geometry) for i in range(0, len(frames), BATCH)])
    return x, np.concatenate([method(x[i : i + BATCH]) for i in range(0, len(x), BATCH)])


def frame_saliency(method: SaliencyMethod, frames: np.ndarray, geometry: Preprocessing) -> np.ndarray:
    """Saliency of camera frames (N, H, W, 3 RGB uint8) over those frames: (N, H, W) in [0, 1].
    Raises FrameError for a frame of another size than the model's geometry."""
    return to_frame(input_saliency(method, frames, geometry)[1], geometry)


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
