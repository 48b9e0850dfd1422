"""Check a legacy HDF5 model file (Keras 2, or ``model.save("x.h5")``) before Keras reads it.

An ``.h5`` model keeps its layer graph as JSON in the ``model_config``
attribute and its weights as HDF5 arrays. :func:`check_h5_file` reads that
attribute (after checking its size) and the sizes of the arrays, never the
arrays, and puts the config through the same checks as a ``.keras`` archive's
``config.json`` (:mod:`.keras_file`); :func:`unknown_h5_layers` names the
custom layers of such a config. Nothing here imports Keras or TensorFlow.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelFileError
from .config_checks import (
    check_config, check_parameters, CODE_LAYERS, config_dicts, LIMITS, Limits, parse_config, size_text,
)


def check_h5_file(path: str | os.PathLike, limits: Limits = LIMITS) -> dict:
    """Inspect a legacy HDF5 model (Keras 2, or ``model.save("x.h5")``) and return its parsed model config.

    Reads the ``model_config`` attribute (after checking its size) and the sizes
    of the stored arrays, never the arrays themselves; h5py comes with
    TensorFlow and does not import it.

    Raises:
        ModelFileError: not HDF5, weights only, or out of bounds.
    """
    import h5py

    path = Path(path)
    name = path.name
    try:
        if not h5py.is_hdf5(path):
            raise ModelFileError(f"{name} is not a readable .h5 model: it is not an HDF5 file.")
        with h5py.File(path, "r") as f:
            if "model_config" not in f.attrs:
                raise ModelFileError(f"{name} holds weights only, not a model: save the whole model "
                                     "(model.save), not model.save_weights.")
            storage = f.attrs.get_id("model_config").get_storage_size()
            if storage > limits.config_bytes:
                raise ModelFileError(f"{name}: its model config is {size_text(storage)}, over the limit of "
                                     f"{size_text(limits.config_bytes)}. Refused.")
            raw = f.attrs["model_config"]
            weights = _h5_array_bytes(f, name, limits)
    except ModelFileError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
        raise ModelFileError(f"{name} is not a readable .h5 model: the file is damaged ({e}).") from None
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    config = parse_config(str(raw).encode("utf-8"), name, limits)
    check_config(config, name, limits)
    check_parameters(config, name, weights)
    return config


def _h5_array_bytes(f, name: str, limits: Limits) -> int:
    """The bytes the file's arrays hold once read, refusing too many objects or too many bytes."""
    import h5py

    objects, total = 0, 0
    most = limits.members * 100  # a ResNet50 .h5 holds about 1,000 groups and arrays

    def visit(_, obj):
        nonlocal objects, total
        objects += 1
        if objects > most:
            raise ModelFileError(f"{name} holds more than {most:,} groups and arrays; a Keras model file holds a "
                                 "few thousand at most. Refused.")
        if isinstance(obj, h5py.Dataset):
            total += obj.size * obj.dtype.itemsize
            if total > limits.total_bytes:
                raise ModelFileError(f"{name} would inflate to more than {size_text(limits.total_bytes)} of "
                                     "weights. Refused.")

    f.visititems(visit)
    return total


def unknown_h5_layers(config, is_known) -> list[tuple[str, str]]:
    """The layer classes of a legacy ``.h5`` config that ``is_known(class_name)`` rejects, as (kind, name) pairs.

    A legacy config names a layer by its bare class name (no module), so only
    Keras itself can tell its own layers from custom ones; code layers are
    left to :func:`code_layers`.
    """
    found: list[tuple[str, str]] = []
    for node in config_dicts(config):
        layers = node.get("layers")
        if not isinstance(layers, list):
            continue
        for layer in layers:
            cls = layer.get("class_name") if isinstance(layer, dict) else None
            if isinstance(cls, str) and cls not in CODE_LAYERS and not is_known(cls) and ("layer", cls) not in found:
                found.append(("layer", cls))
    return found
