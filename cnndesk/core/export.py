"""Export a trained model to the formats Keras offers.

- ``keras``: the native ``.keras`` file; loads in plain Keras with identical predictions.
- ``saved_model``: a TensorFlow SavedModel folder with a ``serve`` endpoint.
- ``litert``: a LiteRT (TFLite) flat buffer, ``.tflite``.
- ``onnx``: needs the ``onnx`` extra (tf2onnx and onnx).

Every export takes 0-255 pixels: cnndesk models rescale inside. Augmentation
never lives in the model (it runs in the input pipeline), so exports are
deterministic.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .errors import UserError

FORMATS = ("keras", "saved_model", "litert", "onnx")
SUFFIX = {"keras": ".keras", "litert": ".tflite", "onnx": ".onnx", "saved_model": ""}


def export_model(model, fmt: str, out: str | os.PathLike) -> Path:
    """Write ``model`` as ``fmt`` to ``out`` (a file, or a folder for SavedModel).

    The export is written to a temporary path beside ``out`` and moved into
    place when complete.

    Raises:
        UserError: unknown format, missing extra, or the destination cannot be written.
    """
    if fmt not in FORMATS:
        raise UserError(f"Unknown export format {fmt!r}; choose from {', '.join(FORMATS)}.")
    out = Path(out).expanduser()
    if SUFFIX[fmt] and out.suffix.lower() != SUFFIX[fmt]:
        out = out.with_name(out.name + SUFFIX[fmt])
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401
            import tf2onnx  # noqa: F401
        except ImportError:
            raise UserError("ONNX export needs the onnx extra: pip install 'cnndesk[onnx]'.") from None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"Cannot create {out.parent}: {e.strerror}.") from None
    _ensure_called(model)
    tmpdir = Path(tempfile.mkdtemp(prefix=".cnndesk-export-", dir=out.parent))
    try:
        tmp = tmpdir / (out.name or "model")
        if fmt == "keras":
            model.save(tmp)
        elif fmt == "saved_model":
            model.export(str(tmp), format="tf_saved_model", verbose=False)
        elif fmt == "litert":
            model.export(str(tmp), format="litert", verbose=False)
        else:
            model.export(str(tmp), format="onnx", verbose=False)
        if out.is_dir() and fmt == "saved_model":
            shutil.rmtree(out)
        os.replace(tmp, out)
    except OSError as e:
        reason = "the disk is full" if e.errno == 28 else (e.strerror or str(e))
        raise UserError(f"Could not export to {out}: {reason}.") from None
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return out


def _ensure_called(model) -> None:
    """Exports need a model that has been called once (not true right after load_model)."""
    shape = (1,) + tuple(int(d) for d in model.inputs[0].shape[1:])
    model(np.zeros(shape, np.float32), training=False)
