"""Export a trained model to the formats Keras offers.

- ``keras``: the native ``.keras`` file; loads in plain Keras with identical predictions.
- ``saved_model``: a TensorFlow SavedModel folder with a ``serve`` endpoint.
- ``litert``: a LiteRT (TFLite) flat buffer, ``.tflite``.
- ``onnx``: needs the ``onnx`` extra (tf2onnx and onnx).

Every export takes 0-255 pixels: cnndesk models rescale inside. cnndesk keeps
augmentation in the input pipeline, but a model opened from elsewhere may hold
``Random*`` layers, which run in training mode unless told otherwise: the
SavedModel and ONNX exports therefore wrap the model in an inference-only
graph (``model(x, training=False)``), so every export is deterministic.

Every export carries the class names (``cnndesk.core.model.labels`` tells the
format): a labels file beside the model file, named after it
(``mymodel.labels.txt`` for ``mymodel.tflite``), or a ``labels.txt`` inside the
SavedModel folder (and its ``assets/``); the ``.keras`` archive also holds them
as its ``labels.txt`` member, which plain Keras ignores, and the ONNX file as
the ``labels`` entry of its ``metadata_props`` (a JSON list). LiteRT has no
place for them without the TFLite metadata tools, so it gets the labels file only.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np

from .. import fsutil
from ..errors import UserError
from .labels import LABELS_FILE, labels_file_for, labels_text

FORMATS = ("keras", "saved_model", "litert", "onnx")
SUFFIX = {"keras": ".keras", "litert": ".tflite", "onnx": ".onnx", "saved_model": ""}

#: the ONNX ``metadata_props`` key holding the class names, as a JSON list
ONNX_LABELS_KEY = "labels"

#: spatial size used to call a model whose input height/width are not fixed
_FALLBACK_SIZE = 224


def labels_path(out: str | os.PathLike, fmt: str) -> Path:
    """Where :func:`export_model` writes the class names for a model exported to ``out``.

    ``out`` is the path :func:`export_model` returned: beside a model file and named after it
    (``mymodel.labels.txt``), ``labels.txt`` inside a SavedModel folder.
    """
    out = Path(out)
    return out / LABELS_FILE if fmt == "saved_model" else labels_file_for(out)


def export_model(model, fmt: str, out: str | os.PathLike, class_names=None, temperature: float | None = None) -> Path:
    """Write ``model`` as ``fmt`` to ``out`` (a file, or a folder for SavedModel), with its class names.

    With a ``temperature`` (``Trust.temperature``) the export gives the calibrated
    probabilities ``softmax(logits / temperature)``, as cnndesk shows them: the
    temperature is folded into the last Dense layer's weights
    (:func:`.temperature.temperature_folded`), so every format keeps its layers;
    an ensemble's export ends with ``softmax(log(mean probabilities) / temperature)``.

    ``class_names`` (one per output; "class 0", "class 1", ... when None) go
    where :func:`labels_path` says and inside the file where the format allows.
    The labels file of an earlier export to the same path is replaced; other models' are left alone.

    The file suffix is added when missing (``model`` -> ``model.keras``). The
    export, and then its labels file, are written through :func:`.fsutil.replacing`
    (a temporary path beside ``out``, moved into place when complete), so a failed
    export leaves an earlier file at ``out`` as it was. An existing SavedModel
    folder is replaced; any other existing folder is refused rather than deleted.

    Returns:
        the path written.

    Raises:
        UserError: unknown format, missing extra, or the destination cannot be written.
    """
    if fmt not in FORMATS:
        raise UserError(f"Unknown export format {fmt!r}; choose from {', '.join(FORMATS)}.")
    out = Path(out).expanduser()
    if not out.name:
        raise UserError(f"Cannot export to {out}: give a file or folder name to write.")
    if SUFFIX[fmt] and out.suffix.lower() != SUFFIX[fmt]:
        out = out.with_name(out.name + SUFFIX[fmt])
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401
            import tf2onnx  # noqa: F401
        except ImportError:
            raise UserError("ONNX export needs the onnx extra: pip install 'cnndesk[onnx]'.") from None
    _check_destination(out, fmt)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"Cannot create the folder {out.parent}: {fsutil.why_not_written(e)}.") from None
    _ensure_called(model)
    names = _class_names(model, class_names)
    folded = contextlib.nullcontext(model)
    if temperature is not None:
        from .temperature import temperature_folded  # imports Keras

        folded = temperature_folded(model, temperature)
    try:
        with fsutil.replacing(out) as tmp:  # an earlier SavedModel folder stays until the new one is whole
            with folded as calibrated:
                _write(calibrated, fmt, tmp, names)
            if not tmp.exists():
                raise UserError(f"Could not export to {out}: the {fmt} exporter wrote nothing.")
        if fmt != "saved_model":
            fsutil.write_text(labels_path(out, fmt), labels_text(names))
    except OSError as e:
        raise UserError(f"Could not export to {out}: {fsutil.why_not_written(e)}.") from None
    return out


def _write(model, fmt: str, tmp: Path, names: list[str]) -> None:
    """Write the export of ``model`` as ``fmt`` at ``tmp``, with the class names inside where the format allows."""
    if fmt == "keras":
        model.save(tmp)
        _embed_in_keras(tmp, names)
    elif fmt == "saved_model":
        _inference_model(model).export(str(tmp), format="tf_saved_model", verbose=False)
        _write_in_saved_model(tmp, names)
    elif fmt == "litert":
        # Keras' LiteRT export already traces model(x, training=False)
        model.export(str(tmp), format="litert", verbose=False)
    else:
        _inference_model(model).export(str(tmp), format="onnx", verbose=False)
        _check_onnx(tmp)
        _embed_in_onnx(tmp, names)


def _class_names(model, class_names) -> list[str]:
    """The names to write: the ones given, else "class 0", "class 1", ... for each output."""
    if class_names is not None:
        return [str(n) for n in class_names]
    return [f"class {i}" for i in range(int(model.outputs[0].shape[-1]))]


def _embed_in_keras(path: Path, names: list[str]) -> None:
    """Add the names to the ``.keras`` archive as its ``labels.txt`` member (Keras reads only its own members)."""
    import zipfile

    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(LABELS_FILE, labels_text(names))


def _write_in_saved_model(folder: Path, names: list[str]) -> None:
    """labels.txt at the top of the SavedModel folder, where people look, and in ``assets/``, where tools look.

    The folder is a new one that ``export_model`` moves into place whole: its files need no temporary names.
    """
    text = labels_text(names)
    (folder / LABELS_FILE).write_text(text, encoding="utf-8")
    assets = folder / "assets"
    assets.mkdir(exist_ok=True)
    (assets / LABELS_FILE).write_text(text, encoding="utf-8")


def _embed_in_onnx(path: Path, names: list[str]) -> None:
    """Store the names in the model's ``metadata_props`` under ``labels``, as a JSON list."""
    import onnx

    proto = onnx.load(str(path))
    entries = [p for p in proto.metadata_props if p.key != ONNX_LABELS_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(entries)
    entry = proto.metadata_props.add()
    entry.key, entry.value = ONNX_LABELS_KEY, json.dumps(names, ensure_ascii=False)
    onnx.save(proto, str(path))


def _check_onnx(path: Path) -> None:
    """tf2onnx writes ops it cannot convert as they are (and only logs an error); refuse such a file."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as e:
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"This model cannot be exported to ONNX: the converter left an operation ONNX does not "
                        f"define ({detail}). Export it as saved_model or litert instead.") from None


def _check_destination(out: Path, fmt: str) -> None:
    """Refuse destinations that cannot or must not be replaced, before any work."""
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"Cannot export to {out}: {parent} is a file, not a folder.")
            break
    if fmt == "saved_model":
        if out.exists() and not out.is_dir():
            raise UserError(f"Cannot export a SavedModel to {out}: it is a file; a SavedModel is a folder. "
                            "Choose a new folder name.")
        if out.is_dir() and any(out.iterdir()) and not (out / "saved_model.pb").exists():
            raise UserError(f"Cannot export a SavedModel to {out}: the folder exists and is not a SavedModel. "
                            "Choose a new folder name (cnndesk replaces only an earlier SavedModel).")
    elif out.is_dir():
        raise UserError(f"Cannot export to {out}: a folder of that name is in the way. Choose another file name.")


def _input_shape(model) -> tuple[int, ...]:
    return tuple(_FALLBACK_SIZE if d is None else int(d) for d in model.inputs[0].shape[1:])


def _ensure_called(model) -> None:
    """Exports need a model that has been called once (not true right after load_model)."""
    model(np.zeros((1,) + _input_shape(model), np.float32), training=False)


def _inference_model(model):
    """A functional model computing ``model(x, training=False)``, sharing its weights.

    SavedModel and ONNX exports call the model without ``training``; random
    augmentation layers then default to training mode (random outputs, and
    ops onnxruntime refuses). The wrapper pins inference mode.
    """
    import keras

    spec = model.inputs[0]
    inp = keras.Input(shape=tuple(spec.shape[1:]), dtype=spec.dtype, name=_input_name(model))
    wrapper = keras.Model(inp, model(inp, training=False), name=model.name)
    _ensure_called(wrapper)  # the ONNX exporter refuses a model never called
    return wrapper


def _input_name(model) -> str:
    name = getattr(model.inputs[0], "name", None) or "image"
    return name.split(":")[0].replace("/", "_") or "image"
