"""Behavioral cloning for the Udacity simulator, and what slimming a CNN buys.

The package's layers, each a folder or a few modules with one job each, are mapped in README.md
("How it fits together"): settings and records (config, options, run, files), data (driving.data,
preprocess, augment, pipeline), models (models, modelio), the world (driving.sim), serving
(runtime, pilot, drive_server, socketio_compat, video, view), evaluation (driving.evaluation),
training (driving.train), analysis (driving.report, driving.saliency) and the command lines.
tests/test_layers.py holds the code to that map. The MNIST and convolution studies live beside
this package, in `experiments/`.
"""

import os

# Before any module of the package imports TensorFlow (tfsetup.setup() does it quietly): INFO logs
# off, and the BFC allocator for CPU tensors, which trains effnet about 2x faster on a 2-core CPU
# (docs/benchmarks.md). Defaults only: the user's environment wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

__version__ = "0.1.0"
