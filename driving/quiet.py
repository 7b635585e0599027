"""Import TensorFlow without its start-up log noise, keeping real warnings.

Import this module before `keras` or `tensorflow` in any module that needs them:

    import driving.quiet  # noqa: F401  (silences TensorFlow's start-up noise)
    import keras

TF_CPP_MIN_LOG_LEVEL=1 hides TensorFlow's INFO lines, but on a machine without CUDA a few lines are
written by absl before TensorFlow reads that variable (cudart stub, cuInit). Those are filtered at
the file-descriptor level during import and device discovery; every other line is passed through.
Set DRIVING_VERBOSE_TF=1 to see everything.

It also turns on TensorFlow's BFC allocator for CPU tensors (TF_CPU_ALLOCATOR_USE_BFC): the default
CPU allocator hands every large activation back to the OS and faults it in again on the next step,
which made CPU training of effnet about half as fast on a 2-core machine (docs/benchmarks.md:
`TF_CPU_ALLOCATOR_USE_BFC=false python bench/models.py` against the default).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

_NOISE = re.compile(
    r"absl::InitializeLog|cudart_stub|cuda_platform|cuInit|cuda_dnn|cuda_fft|cuda_blas"
    r"|computation_placer|oneDNN custom operations|TensorFlow binary is optimized"
    r"|rebuild TensorFlow with the appropriate compiler flags|Unable to register cu"
    r"|All log messages before"
)


def _import_tensorflow_quietly() -> None:
    if os.environ.get("DRIVING_VERBOSE_TF") == "1":
        import tensorflow as tf

        tf.config.list_physical_devices()
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # device discovery logs too
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines():
                if line.strip() and not _NOISE.search(line):
                    print(line, file=sys.stderr)


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 for a while (C++ logging bypasses Python's sys.stderr): the
    TFLite converter and the LiteRT interpreter log from C++."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


if "tensorflow" not in sys.modules and os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
    _import_tensorflow_quietly()
