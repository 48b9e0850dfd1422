"""Pretrained backbones without the internet: weights files made at test time, where Keras keeps real ones.

``cache_weights`` builds a family with ``weights=None`` and saves its weights in
Keras' legacy HDF5 layout (the layout of the files keras.applications downloads)
under the exact file name Keras expects, in a temporary ``KERAS_HOME/models``;
cnndesk then finds and loads them through its normal path.
"""

from __future__ import annotations

import socket
import urllib.error
from pathlib import Path

import h5py
import keras
from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

from cnndesk.core.model.backbones import family


def offline_urlopen(*_args, **_kwargs):
    """What ``urllib.request.urlopen`` raises on a computer without a network."""
    raise urllib.error.URLError(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))


def save_legacy_weights(model, path: Path) -> Path:
    with h5py.File(path, "w") as f:
        save_weights_to_hdf5_group(f, model)
    return path


def cache_weights(keras_home: Path, name: str, input_shape=(32, 32, 3), seed: int = 5) -> Path:
    """Write random weights for family ``name`` under the file name Keras expects in ``keras_home/models``."""
    keras.utils.set_random_seed(seed)
    kwargs = {"include_top": False, "weights": None, "input_shape": input_shape}
    if name == "MobileNetV3Small":
        kwargs["include_preprocessing"] = True
    model = getattr(keras.applications, name)(**kwargs)
    folder = Path(keras_home) / "models"
    folder.mkdir(parents=True, exist_ok=True)
    return save_legacy_weights(model, folder / family(name).weights_file(input_shape).name)
