"""TensorFlow set up by one explicit call: `setup()`, before the first module that imports it.

Entry points parse their arguments first, then call `setup()`, then import the stage they run, so
`--help` never loads TensorFlow:

    args = parser.parse_args(argv)
    tfsetup.setup()
    from driving.train import stage

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


def setup() -> None:
    """Import TensorFlow quietly with the package's settings; a no-op once TensorFlow is loaded.

    The environment defaults (log level, the BFC CPU allocator) are set by `driving/__init__.py`,
    so they hold even for a library user who imports a stage module without calling this."""
    if "tensorflow" not in sys.modules and os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
        _import_tensorflow_quietly()
