"""Behavioral cloning for the Udacity simulator, and what slimming a CNN buys.

Modules, one concern each (see README.md for the data flow):
config, preprocess, data, augment, pipeline, models, train, report, runtime, server, sim, video.
The MNIST and convolution studies live beside this package, in `studies/`.
"""

__version__ = "0.1.0"
