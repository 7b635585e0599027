"""Behavioral cloning for the Udacity simulator, and what slimming a CNN buys.

Modules, one concern each (see README.md for the data flow):
config, preprocess, data, augment, pipeline, models, train, report, runtime, server, sim, video.
The MNIST and convolution studies live beside this package, in `experiments/`.
"""

import os

# Before any module of the package imports TensorFlow (tfsetup.setup() does it quietly): INFO logs
# off, and the BFC allocator for CPU tensors, which trains effnet about 2x faster on a 2-core CPU
# (docs/benchmarks.md). Defaults only: the user's environment wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

__version__ = "0.1.0"
