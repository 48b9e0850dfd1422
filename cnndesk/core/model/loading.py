"""Open a model file, from cnndesk or from a stranger, in Keras' safe mode.

Every way into the app (Open Model, a drop, a project, the command line) opens
a ``.keras`` or legacy ``.h5`` file through :func:`load_keras_model`: it checks
the file before Keras reads it (:mod:`.keras_file`, :mod:`.h5_file`), refuses
layers carrying code and classes Keras does not know, and turns the many
errors Keras raises into one :class:`ModelFileError`. :func:`model_labels`
finds the class names that travel with a file. See ``docs/model-files.md``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelFileError
from .labels import LABELS_FILE, labels_file_for, parse_labels
from .config_checks import code_layers, code_refusal, describe_unknown, LIMITS, unknown_classes
from .keras_file import check_model_path, H5_SUFFIXES, read_embedded_labels
from .h5_file import unknown_h5_layers


def load_keras_model(path: str | os.PathLike):
    """Open a ``.keras`` or legacy ``.h5`` file in Keras' safe mode (no code from the file runs).

    Layers carrying code (Lambda) and classes Keras does not know (custom
    layers) are refused, by name where the file gives one.

    Raises:
        ModelFileError: one message for every way the file can be wrong.
    """
    path = Path(path).expanduser()
    config = check_model_path(path)  # refuses damaged and hostile archives before Keras reads them
    if code_layers(config):
        raise ModelFileError(code_refusal(path.name))
    import keras

    legacy = path.suffix.lower() in H5_SUFFIXES
    if legacy:
        unknown = unknown_h5_layers(config, _is_keras_layer)
        if unknown:
            raise ModelFileError(f"{path.name}: {describe_unknown(unknown)}.")
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as e:  # Keras raises many unrelated types for damaged files
        unknown = unknown_classes(config, lambda name: keras.saving.get_registered_object(name) is not None)
        if unknown:
            raise ModelFileError(f"{path.name}: {describe_unknown(unknown)}.") from None
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "unsafe" in msg.lower() or "lambda" in msg.lower() or "safe_mode" in msg.lower():
            raise ModelFileError(code_refusal(path.name)) from None
        kind = ".h5" if legacy else ".keras"
        raise ModelFileError(f"{path.name} is not a readable {kind} model: {msg[:300]}") from None
    if not isinstance(model, keras.Model):
        raise ModelFileError(f"{path.name} does not hold a Keras model.")
    return model


def _is_keras_layer(class_name: str) -> bool:
    """Whether Keras can build a layer a legacy config names only by its class name."""
    import keras

    if class_name in ("Functional", "Sequential", "Model"):
        return True
    return isinstance(getattr(keras.layers, class_name, None), type) or (
        keras.saving.get_registered_object(class_name) is not None)


def model_labels(path: str | os.PathLike) -> list[str] | None:
    """The class names that travel with a model file, or None.

    A ``.keras`` file exported by cnndesk holds them (its ``labels.txt``
    member); otherwise the labels file named after the model beside it is
    read (``mymodel.labels.txt``, as cnndesk's exports write it), else a
    ``labels.txt`` beside it (Teachable Machine's, and older cnndesk exports').
    Call after the file was checked.
    """
    path = Path(path).expanduser()
    if path.suffix.lower() == ".keras":
        names = read_embedded_labels(path)
        if names:
            return names
    for beside in (labels_file_for(path), path.parent / LABELS_FILE):
        try:
            if beside.is_file() and beside.stat().st_size <= LIMITS.metadata_bytes:
                return parse_labels(beside.read_text(encoding="utf-8", errors="replace")) or None
        except OSError:
            return None
    return None


def load_model_with_labels(path: str | os.PathLike):
    """:func:`load_keras_model`, and the class names that travel with the file (None when there are none).

    Returns:
        (model, names or None). The names are not checked against the model's outputs: the caller,
        which knows how it counts classes, decides.
    """
    model = load_keras_model(path)
    return model, model_labels(path)
