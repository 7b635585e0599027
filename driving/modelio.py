"""Model files (.keras, .h5, .tflite) that carry how they were made.

Every model file the project writes holds a small JSON record, its ModelInfo: the preprocessing
geometry it was trained with (what drive.py, the report and the simulator must feed it), its
registry name, the augmentation settings, the run that made it (data, split, seed, budget,
package versions) and which checkpoint of that run it is (driving.run.Checkpoint: kind, epoch,
step, the metric that chose it). Where it lives:

    .keras   a `driving.json` member of the zip archive (Keras ignores members it does not know)
    .h5      a `driving` attribute on the file's root group
    .tflite  a `driving` entry in the flatbuffer's metadata table (LiteRT ignores it)

A model saved before the record existed has none: load_info() returns None and the loaders fall
back to today's defaults, saying so once. Every write is atomic (driving/files.py). Reading the
record needs neither TensorFlow nor Keras.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from driving.config import DEFAULT_PREPROCESSING, ConfigError, Preprocessing
from driving.files import RecordError, atomic_path, parse_json
from driving.run import Checkpoint

INFO_NAME = "driving"  # the .h5 attribute and the .tflite metadata entry
KERAS_MEMBER = "driving.json"  # the .keras archive member
KERAS_SUFFIXES = (".keras", ".h5")
TFLITE_EXTENSION = ".tflite"
TFLITE_KINDS = ("float32", "float16", "int8")
INFO_VERSION = 1
# A record is a few KB (the run's settings); anything near this is damage or a crafted file, refused
# before it is inflated or parsed.
MAX_INFO_BYTES = 256 * 1024

log = logging.getLogger("driving.modelio")


class ModelFileError(ValueError):
    """A model file that cannot be used: missing, truncated, another format, unsafe content."""


@dataclass
class ModelInfo:
    """What a model file says about itself. Only `preprocessing` is needed to serve it."""

    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    model: str = ""  # registry name (driving.models), "" when unknown
    augment: dict | None = None  # driving.config.AugmentConfig as a dict
    run: dict | None = None  # the RunConfig that trained it, as saved in run.json
    checkpoint: Checkpoint | None = None  # which checkpoint of the run (kind, epoch, step, metric)

    def to_json(self) -> str:
        data = {
            "version": INFO_VERSION,
            "preprocessing": self.preprocessing.to_dict(),
            "model": self.model,
            "augment": self.augment,
            "run": self.run,
            "checkpoint": self.checkpoint.to_dict() if self.checkpoint else None,
        }
        return json.dumps(data, allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes, source: str) -> ModelInfo:
        """The record, bounded (size, depth) and checked field by field; ModelFileError names the
        file and the field. A record without its preprocessing is served with today's defaults,
        and says so once, as a file with no record at all does."""
        where = f"{source}: its '{INFO_NAME}' record"
        if len(text) > MAX_INFO_BYTES:
            raise ModelFileError(f"{where} is {len(text):,} bytes, more than the {MAX_INFO_BYTES:,} allowed")
        try:
            data = parse_json(text, where)
            if not isinstance(data, dict):
                raise ValueError(f"not a JSON object but {type(data).__name__}")
            if "preprocessing" not in data:
                _warn_once(source, "its record names no preprocessing")
            preprocessing = Preprocessing.from_dict(data.get("preprocessing", {}), "preprocessing")
            for name, kind in (("model", str), ("augment", dict), ("run", dict)):
                value = data.get(name)
                if value is not None and not isinstance(value, kind):
                    raise ValueError(f"field '{name}' must be {kind.__name__}, got {type(value).__name__}")
            # A dict since the record was typed; older files hold a prose label ("best validation
            # loss, epoch 4"), kept as the note of an "unknown" checkpoint.
            checkpoint = Checkpoint.from_record(data.get("checkpoint"), "checkpoint")
        except RecordError as e:
            raise ModelFileError(f"{where} is unreadable ({str(e).removeprefix(where + ': ')})") from None
        except (ValueError, ConfigError, TypeError) as e:
            raise ModelFileError(f"{where} is unreadable ({e})") from None
        return cls(
            preprocessing=preprocessing,
            model=data.get("model") or "",
            augment=data.get("augment"),
            run=data.get("run"),
            checkpoint=checkpoint,
        )


# --- reading the record -------------------------------------------------------------------------


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file")
    if not path.is_file():
        raise ModelFileError(f"{path}: not a file")


def _keras_info(path: Path) -> str | None:
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: not a .keras file (not a zip archive: truncated, or another format)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "config.json" not in names:
                raise ModelFileError(f"{path}: not a .keras file (no config.json inside)")
            if KERAS_MEMBER not in names:
                return None
            size = archive.getinfo(KERAS_MEMBER).file_size  # as inflated: checked before inflating
            if size > MAX_INFO_BYTES:
                raise ModelFileError(
                    f"{path}: its '{KERAS_MEMBER}' record inflates to {size:,} bytes, more than the "
                    f"{MAX_INFO_BYTES:,} allowed"
                )
            return archive.read(KERAS_MEMBER).decode()
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, EOFError) as e:
        raise ModelFileError(f"{path}: a damaged .keras archive ({e})") from None


def _h5_info(path: Path) -> str | None:
    import h5py

    if not h5py.is_hdf5(path):
        raise ModelFileError(f"{path}: not an .h5 model (not an HDF5 file: truncated, or another format)")
    try:
        with h5py.File(path, "r") as f:
            if INFO_NAME not in f.attrs:
                return None
            size = f.attrs.get_id(INFO_NAME).get_storage_size()
            if size > MAX_INFO_BYTES:
                raise ModelFileError(
                    f"{path}: its '{INFO_NAME}' record is {size:,} bytes, "
                    f"more than the {MAX_INFO_BYTES:,} allowed"
                )
            value = f.attrs.get(INFO_NAME)
    except OSError as e:  # h5py: "truncated file", "bad object header"...
        raise ModelFileError(f"{path}: a damaged .h5 file ({e})") from None
    return value.decode() if isinstance(value, bytes) else value


def tflite_info(content: bytes, source: str = "model.tflite") -> ModelInfo | None:
    """The record inside a LiteRT flatbuffer, or None if it has none."""
    from tensorflow.lite.python import schema_py_generated as schema

    try:
        model = schema.Model.GetRootAs(content, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() == INFO_NAME.encode():
                buffer = model.Buffers(entry.Buffer())
                if buffer.DataLength() > MAX_INFO_BYTES:
                    raise ModelFileError(
                        f"{source}: its '{INFO_NAME}' record is {buffer.DataLength():,} bytes, "
                        f"more than the {MAX_INFO_BYTES:,} allowed"
                    )
                return ModelInfo.from_json(buffer.DataAsNumpy().tobytes(), source)
    except ModelFileError:
        raise
    except Exception as e:  # flatbuffers raise struct/index errors on garbage
        raise ModelFileError(
            f"{source}: not a usable LiteRT model (its flatbuffer is unreadable: {e})"
        ) from None
    return None


def load_info(path: str | Path) -> ModelInfo | None:
    """The record of any model file, or None for a model saved before records existed.
    Raises ModelFileError for a file that is missing, truncated or of another format."""
    path = Path(path)
    _check_file(path)
    suffix = path.suffix.lower()
    if suffix == ".keras":
        text = _keras_info(path)
    elif suffix == ".h5":
        text = _h5_info(path)
    elif suffix == TFLITE_EXTENSION:
        return tflite_info(path.read_bytes(), str(path))
    else:
        raise ModelFileError(f"{path}: unknown model format {suffix!r} (expected .keras, .h5 or .tflite)")
    return None if text is None else ModelInfo.from_json(text, str(path))


_warned: set[str] = set()


def _warn_once(source: str, why: str) -> None:
    if source not in _warned:
        _warned.add(source)
        log.warning("%s: %s; using today's defaults: %s", source, why, DEFAULT_PREPROCESSING.describe())


def info_or_default(info: ModelInfo | None, source: str) -> ModelInfo:
    """`info`, or today's defaults for a model without a record, with one warning per file."""
    if info is not None:
        return info
    _warn_once(source, "carries no preprocessing record (saved before models stored one)")
    return ModelInfo()


# --- Keras files ----------------------------------------------------------------------------------


def load_keras(path: str | Path, compile: bool = False):
    """A .keras or .h5 model (Keras safe mode: a model that carries code is refused, not run) and
    its record. Uncompiled unless asked, which is all inference needs. Raises ModelFileError with
    one line saying what is wrong with the file."""
    path = Path(path)
    info = load_info(path)  # also checks the file is what its suffix says
    if path.suffix.lower() not in KERAS_SUFFIXES:
        raise ModelFileError(f"{path}: expected a .keras or .h5 model file")
    from driving import tfsetup

    tfsetup.setup()

    import keras

    import driving.contrast  # noqa: F401  (Keras must know the package's own layer by name first)

    try:
        model = keras.models.load_model(path, compile=compile, safe_mode=True)
    except Exception as e:  # Keras raises ValueError, OSError, TypeError... by format and fault
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"{path}: cannot load as a Keras model in safe mode ({first[:200]})") from None
    return model, info


def save_keras(model, path: str | Path, info: ModelInfo, include_optimizer: bool = True) -> Path:
    """Write `model` as .keras or .h5 with its record, atomically."""
    path = Path(path)
    if path.suffix not in KERAS_SUFFIXES:
        raise ValueError(f"{path}: expected a .keras or .h5 file name")
    with atomic_path(path) as tmp:
        if path.suffix == ".h5":
            _save_h5(model, tmp, include_optimizer)
            import h5py

            with h5py.File(tmp, "a") as f:
                f.attrs[INFO_NAME] = info.to_json()
        else:
            if include_optimizer:
                model.save(tmp)
            else:  # .keras has no include_optimizer switch: save an optimizer-free copy
                import keras

                clone = keras.models.clone_model(model)
                clone.set_weights(model.get_weights())
                clone.save(tmp)
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(KERAS_MEMBER, info.to_json())
    return path


def _save_h5(model, tmp: Path, include_optimizer: bool) -> None:
    # Keras logs that .h5 is legacy; it is kept on purpose (the original compared .h5 sizes).
    # Keras' .h5 writer pops "optimizer" out of the model's own compile config, so a later .keras
    # save would silently lose the optimizer; put the entry back afterwards.
    compile_config = getattr(model, "_compile_config", None)
    saved_config = dict(compile_config.config) if compile_config is not None else None
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        model.save(tmp, include_optimizer=include_optimizer)
    finally:
        absl.setLevel(level)
        if saved_config is not None:
            compile_config.config = saved_config


# --- LiteRT files ---------------------------------------------------------------------------------


def to_tflite(model, kind: str = "float32", calibration: np.ndarray | None = None) -> bytes:
    """`model` as a LiteRT flatbuffer with a fixed batch-1 input, the shape serving uses: float32,
    float16 weights, or full-integer int8 (int8 input and output, calibrated on `calibration`,
    preprocessed frames float32 [N, H, W, 3]). In int8, a LocalContrast layer's ops stay float
    between the int8 input and the int8 body: its division by a small local spread is what 8 bits
    lose most (docs/models.md). The one conversion path of the project: drive.py's in-memory
    conversion and the report's exported files are the same model."""
    if kind not in TFLITE_KINDS:
        raise ValueError(f"unknown TFLite kind {kind!r}; choose from {', '.join(TFLITE_KINDS)}")
    if kind == "int8" and (calibration is None or len(calibration) == 0):
        raise ValueError("int8 conversion needs calibration frames")
    import tempfile

    from driving import tfsetup

    tfsetup.setup()
    import tensorflow as tf

    from driving.tfsetup import quiet_stderr

    input_shape = tuple(model.input_shape[1:])
    with tempfile.TemporaryDirectory() as saved, quiet_stderr():
        # Via a SavedModel: its variables are frozen into constants, which int8 calibration needs.
        model.export(
            saved,
            format="tf_saved_model",
            verbose=False,
            input_signature=[tf.TensorSpec([1, *input_shape], tf.float32)],
        )
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        if kind == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif kind == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: (
                [calibration[i : i + 1]] for i in range(len(calibration))
            )
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
            keep_float = _local_contrast_tensors(model, saved)
            if keep_float:
                options = tf.lite.experimental.QuantizationDebugOptions(
                    denylisted_nodes=keep_float, fully_quantize=True
                )
                # The debugger builds TensorFlow's own interpreter, which announces its deprecation;
                # the file it writes is read by LiteRT like any other.
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", "\\s*Warning: tf.lite.Interpreter is deprecated")
                    debugger = tf.lite.experimental.QuantizationDebugger(
                        converter=converter,
                        debug_dataset=converter.representative_dataset,
                        debug_options=options,
                    )
                    return debugger.get_nondebug_quantized_model()
        return converter.convert()


def _local_contrast_tensors(model, saved_model: str) -> list[str]:
    """The names, in the converted graph, of the tensors the model's LocalContrast layers compute
    (the converter names each op's output after the layer that made it); [] without such a layer."""
    from driving.contrast import LocalContrast

    def walk(layer):
        for inner in getattr(layer, "layers", []):
            yield inner
            yield from walk(inner)

    names = [layer.name for layer in walk(model) if isinstance(layer, LocalContrast)]
    if not names:
        return []
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    # Keras may add a counter to a layer's name when it traces the model for export: "name_1".
    pattern = re.compile("|".join(rf"(^|/){re.escape(name)}(_\d+)?/" for name in names))
    graph = Interpreter(model_content=tf.lite.TFLiteConverter.from_saved_model(saved_model).convert())
    return [t["name"] for t in graph.get_tensor_details() if pattern.search(t["name"])]


def with_info(content: bytes, info: ModelInfo) -> bytes:
    """The flatbuffer `content` with `info` in its metadata table (replacing an older record)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    model.metadata = [m for m in (model.metadata or []) if m.name != INFO_NAME.encode()]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(info.to_json().encode(), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = INFO_NAME, len(model.buffers) - 1
    model.metadata.append(entry)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def export_tflite(model, path: str | Path, kind: str, info: ModelInfo, calibration=None) -> Path:
    """Write `model` as a LiteRT file of `kind` (see to_tflite) with its record, atomically."""
    path = Path(path)
    content = with_info(to_tflite(model, kind, calibration), info)
    with atomic_path(path) as tmp:
        tmp.write_bytes(content)
    return path
