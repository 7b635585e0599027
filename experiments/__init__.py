"""Beside the steering code: the MNIST Baseline-vs-EffNet reproduction and the convolution study."""
