"""Pretrained keras.applications backbones: the families, their weights files, building and fine-tuning.

A backbone is one entry of the layer stack (``LayerSpec("Backbone", {...})``)
that stands for a whole keras.applications network without its classifier
(``include_top=False``). Its ImageNet weights are the very files
``keras.applications.X(weights="imagenet")`` downloads, kept where Keras keeps
them (``$KERAS_HOME/models``, by default ``~/.keras/models``), so a file one of
them fetched serves the other. cnndesk downloads them itself, with progress
and cancel, because ``keras.utils.get_file`` offers neither; it checks the same
hash Keras checks. The facts (file names, sizes, preprocessing of each family)
are in docs/transfer-learning.md.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import re
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .. import fsutil
from ..errors import Cancelled, UserError
from ..tasks import TaskState

#: the ``weights`` value that means "the ImageNet weights from the Keras cache"; any other value is the
#: path of a weights file, except "none": random weights (for timing and shape tests, nothing to load)
IMAGENET = "imagenet"
#: the bytes read per step while downloading; progress and cancel are checked after each
CHUNK = 256 * 1024


@dataclass(frozen=True)
class WeightsFile:
    """One ImageNet weights file, as Keras names, fetches and checks it.

    Attributes:
        name: the file name Keras looks for in its cache folder.
        url: where Keras downloads it from.
        md5: the hash Keras checks after a download; None where Keras checks none.
        size: its size in bytes.
    """

    name: str
    url: str
    md5: str | None
    size: int

    @property
    def megabytes(self) -> str:
        return f"{self.size / 1e6:.1f} MB"


@dataclass(frozen=True)
class Family:
    """A keras.applications family cnndesk offers as a pretrained backbone.

    Attributes:
        name: the keras.applications function ("MobileNetV3Small").
        default_size: the image side its ImageNet weights were trained at.
        channels: channels of its last feature map.
        params: its parameter count without the classifier (the same at every input size).
        preprocessing: what the model does to 0-255 pixels before the first convolution, in words.
        blocks: its blocks in order, as ``backbone_blocks`` groups the layers.
        block_pattern: a layer name's block, as the regular expression's first group.
        top_pattern: the layers after the last block (its final 1x1 convolution), one block "top".
        macs_224: multiply-adds for one 224x224 image, as published for the family (with its classifier,
            a few per cent more than the backbone alone).
        first_layer: its first convolution's name (any case), which a weights file for it names.
    """

    name: str
    default_size: int
    channels: int
    params: int
    preprocessing: str
    blocks: tuple[str, ...]
    block_pattern: str
    top_pattern: str
    macs_224: int
    first_layer: str

    @property
    def layer_name(self) -> str:
        """The nested model's name, so the viewer lists its layers as ``mobilenetv3small/conv``."""
        return self.name.lower()

    def weights_file(self, input_shape: tuple[int, int, int]) -> WeightsFile:
        return _WEIGHTS[self.name](input_shape)


def _mobilenet_v3_small(_shape) -> WeightsFile:
    name = "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"
    return WeightsFile(name, "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/" + name,
                       "d3e8ec802a04aa4fc771ee12a9a9b836", 4_334_752)


def _efficientnet_b0(_shape) -> WeightsFile:
    name = "efficientnetb0_notop.h5"
    return WeightsFile(name, "https://storage.googleapis.com/keras-applications/" + name,
                       "50bc09e76180e00e4465e1a485ddc09d", 16_705_208)


def _mobilenet_v2(shape) -> WeightsFile:
    # Keras publishes one file per square size it was trained at and takes the 224 one for any other size
    rows = shape[0] if shape[0] == shape[1] and shape[0] in (96, 128, 160, 192, 224) else 224
    name = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"
    return WeightsFile(name, "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/" + name,
                       None, 9_406_464)


_WEIGHTS = {"MobileNetV3Small": _mobilenet_v3_small, "EfficientNetB0": _efficientnet_b0,
            "MobileNetV2": _mobilenet_v2}

FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("MobileNetV3Small", 224, 576, 939_120, "scales pixels to -1..1 (a Rescaling layer inside the backbone)",
           ("stem", "expanded_conv", *(f"expanded_conv_{i}" for i in range(1, 11)), "top"),
           r"^(expanded_conv(?:_\d+)?)_", r"^conv_1", 66_000_000, "conv"),
    Family("EfficientNetB0", 224, 1280, 4_049_571,
           "scales pixels to 0-1 and normalises them with the ImageNet mean and deviation (Rescaling and "
           "Normalization layers inside the backbone)",
           ("stem", "block1a", "block2a", "block2b", "block3a", "block3b", "block4a", "block4b", "block4c",
            "block5a", "block5b", "block5c", "block6a", "block6b", "block6c", "block6d", "block7a", "top"),
           r"^(block\d+[a-z])_", r"^top_", 390_000_000, "stem_conv"),
    Family("MobileNetV2", 224, 1280, 2_257_984,
           "scales pixels to -1..1 (a Rescaling layer before the backbone)",
           ("stem", "expanded_conv", *(f"block_{i}" for i in range(1, 17)), "top"),
           r"^(expanded_conv|block_\d+)_", r"^(Conv_1|out_relu)", 300_000_000, "conv1"),
)}

#: the smallest image side the families accept (keras.applications refuses less)
MIN_SIZE = 32
#: how much the backbone shrinks each side of the image (five stride-2 stages)
STRIDE = 32
#: the learning rate of the fine-tuning stage is the head stage's divided by this
FINE_TUNE_LR_DIVISOR = 10


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise UserError(f"Unknown backbone {name!r}; choose from {', '.join(FAMILIES)}.")
    return FAMILIES[name]


class WeightsUnavailable(UserError):
    """The ImageNet weights are not in the cache and could not be downloaded.

    Attributes:
        file: the file that is needed.
        folder: where to put it (the Keras cache folder).
    """

    def __init__(self, message: str, file: WeightsFile, folder: Path):
        super().__init__(message)
        self.file, self.folder = file, folder


def keras_cache_dir() -> Path:
    """The folder Keras keeps downloaded weights in: ``$KERAS_HOME/models``, else ``~/.keras/models``.

    Read at each call (Keras reads ``KERAS_HOME`` once, when it is imported),
    with Keras' own rule: ``~/.keras``, or ``/tmp/.keras`` when the home folder
    cannot be written.
    """
    home = os.environ.get("KERAS_HOME")
    if not home:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    return Path(home) / "models"


def cached_weights(fam: Family, input_shape: tuple[int, int, int]) -> Path | None:
    """The ImageNet weights file in the Keras cache, or None when it is not there."""
    path = keras_cache_dir() / fam.weights_file(input_shape).name
    return path if path.is_file() else None


def missing_message(fam: Family, input_shape: tuple[int, int, int], reason: str) -> str:
    """What to do when the weights are not there: the exact file, its size, where it goes and where it is."""
    f = fam.weights_file(input_shape)
    return (f"{reason} {fam.name} needs its ImageNet weights file {f.name} ({f.megabytes}) in the Keras cache "
            f"folder {keras_cache_dir()}. Download it from {f.url} on a computer that is online and copy it "
            "into that folder, or choose a weights file.")


def chosen_weights_problem(params: dict) -> str | None:
    """What is wrong with the weights file a backbone's parameters name, in a sentence; None when it can be
    loaded, or when the weights are not a chosen file (ImageNet from the cache, or random)."""
    weights = params.get("weights", IMAGENET)
    if weights is None or weights in (IMAGENET, "none"):
        return None
    path = Path(weights).expanduser()
    try:
        stat = path.stat()
    except OSError:
        return f"The weights file {path} does not exist. Choose another, or use the ImageNet weights."
    if not path.is_file():
        return f"{path} is a folder, not a Keras weights file (.h5). Choose a file, or use the ImageNet weights."
    fam = FAMILIES.get(params.get("family"))
    return _file_problem(str(path), stat.st_mtime_ns, stat.st_size, fam.name if fam else "")


@functools.lru_cache(maxsize=32)
def _file_problem(path: str, _mtime_ns: int, _size: int, family_name: str) -> str | None:
    """``chosen_weights_problem`` for one version of a file (the model panel asks at every edit).

    It reads what Keras' loader reads first: an HDF5 file, whose ``layer_names``
    (at the top or under ``model_weights``) name the layers the weights are for.
    A file whose layers do not include the family's first convolution holds
    another network's weights.
    """
    import h5py

    fam = FAMILIES.get(family_name)
    expected = f"the file keras.applications saves for {fam.name} (such as {fam.weights_file((224, 224, 3)).name})" \
        if fam else "a Keras weights file"
    if not h5py.is_hdf5(path):
        return f"This file is not a Keras weights file (.h5): {path}. Choose {expected}, or use the ImageNet weights."
    try:
        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
            names = [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in group.attrs.get("layer_names", [])]
    except (OSError, KeyError, ValueError, TypeError):
        names = []
    if not names:
        return f"{path} is an HDF5 file but holds no Keras weights. Choose {expected}, or use the ImageNet weights."
    if fam is not None and fam.first_layer not in {n.lower() for n in names}:
        return (f"The weights file {path} does not fit {fam.name}: it holds the weights of another network. "
                f"Choose {expected}, or use the ImageNet weights.")
    return None


def weights_path(params: dict, input_shape: tuple[int, int, int]) -> Path | None:
    """The file a backbone's weights come from, without downloading: None for random weights.

    Raises:
        WeightsUnavailable: the ImageNet file is not in the Keras cache.
        UserError: a chosen weights file does not exist or holds no weights for the family
            (``chosen_weights_problem``).
    """
    fam = family(params["family"])
    weights = params.get("weights", IMAGENET)
    if weights is None or weights == "none":
        return None
    if weights != IMAGENET:
        problem = chosen_weights_problem(params)
        if problem:
            raise UserError(problem)
        return Path(weights).expanduser()
    path = cached_weights(fam, input_shape)
    if path is None:
        raise WeightsUnavailable(missing_message(fam, input_shape, "The ImageNet weights have not been downloaded."),
                                 fam.weights_file(input_shape), keras_cache_dir())
    return path


def ensure_weights(params: dict, input_shape: tuple[int, int, int], state: TaskState | None = None,
                   opener=None) -> Path | None:
    """The weights file of a backbone, downloaded into the Keras cache first when it is not there.

    Progress goes to ``state`` (``set_status`` once, then percentages); its
    interruption request cancels within one chunk and removes the partial file.

    Args:
        params: the Backbone layer's parameters.
        input_shape: the model's input shape (MobileNetV2's file depends on it).
        state: progress and cancel. Defaults to None.
        opener: ``urllib.request.urlopen`` or a stand-in. Defaults to None (urlopen).

    Raises:
        WeightsUnavailable: offline, or the server did not give the file; the message says what to do.
        Cancelled: the user cancelled (nothing was left in the cache).
    """
    try:
        return weights_path(params, input_shape)
    except WeightsUnavailable:
        pass
    fam = family(params["family"])
    f = fam.weights_file(input_shape)
    folder = keras_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _download(f, folder / f.name, state, opener or urllib.request.urlopen)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise WeightsUnavailable(missing_message(fam, input_shape, download_failure(e, folder)), f, folder) from None
    return folder / f.name


#: what a computer without a network meets: no name lookup, no route, no answer
_OFFLINE_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.ECONNREFUSED, errno.ETIMEDOUT,
                   *(getattr(socket, n) for n in ("EAI_NONAME", "EAI_AGAIN", "EAI_FAIL", "EAI_NODATA")
                     if hasattr(socket, n))}


def download_failure(e: BaseException, folder: Path) -> str:
    """Why a weights download failed, as a sentence for a person (no errno, no library's words)."""
    if isinstance(e, urllib.error.HTTPError):
        return f"The download server refused the weights file (HTTP {e.code})."
    reason = e.reason if isinstance(e, urllib.error.URLError) else e
    if isinstance(reason, ssl.SSLError):
        return ("The secure connection to the download server failed (a proxy or a wrong clock can cause this): "
                "the weights could not be downloaded.")
    if isinstance(reason, (socket.gaierror, TimeoutError)) or (
            isinstance(reason, OSError) and reason.errno in _OFFLINE_ERRNOS):
        return "No internet connection: the weights could not be downloaded."
    if isinstance(e, urllib.error.URLError):
        return "The download server could not be reached: the weights could not be downloaded."
    if isinstance(e, ValueError):  # the checksum: the words are ours
        return f"The weights could not be downloaded: {e}."
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS):
        why = "the disk is full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "it cannot be written"
        return f"The weights could not be saved in the Keras cache folder {folder}: {why}."
    return "The connection broke off: the weights could not be downloaded."


def _download(f: WeightsFile, target: Path, state: TaskState | None, opener) -> None:
    """Fetch ``f`` into ``target`` through a temporary file that only a complete, checked download replaces."""
    state = state or TaskState()
    state.set_status(f"Downloading the ImageNet weights {f.name} ({f.megabytes})…")
    digest = hashlib.md5()
    done = 0
    with opener(f.url, timeout=30) as response, fsutil.open_replacing(target, "wb") as out:
        total = int(response.headers.get("Content-Length") or f.size)
        while chunk := response.read(CHUNK):
            if state.is_interruption_requested():
                raise Cancelled(f"Download of {f.name} cancelled; nothing was kept.")
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            state.set_progress_value(min(99.0, 100.0 * done / max(total, 1)))
        if f.md5 is not None and digest.hexdigest() != f.md5:  # before the block ends: a damaged file is not kept
            raise ValueError(f"the file arrived damaged ({done:,} bytes, wrong checksum)")
    state.set_progress_value(100.0)


# ---------------------------------------------------------------------------
# Keras (only these need TensorFlow)

def build_backbone(params: dict, input_shape: tuple[int, int, int]):
    """The family's network without its classifier, its preprocessing inside, weights loaded and frozen.

    ``keras.applications.EfficientNetB0(weights="imagenet")`` adds one more
    ``Rescaling`` after its ``Normalization`` that a model built for a weights
    file lacks; the same scaling is folded into the normalisation's variance
    here, so both compute the same features (docs/transfer-learning.md).
    """
    import keras

    fam = family(params["family"])
    path = weights_path(params, input_shape)
    kwargs = {"include_top": False, "weights": None, "input_shape": tuple(input_shape), "name": fam.layer_name}
    if fam.name == "MobileNetV3Small":
        kwargs["include_preprocessing"] = True
    model = getattr(keras.applications, fam.name)(**kwargs)
    if path is not None:
        try:
            model.load_weights(str(path))
        except Exception as e:  # Keras says ValueError or KeyError, h5py OSError, for a file of another model
            raise UserError(f"The weights file {path} does not fit {fam.name}: {e}") from None
        if fam.name == "EfficientNetB0":
            _fold_imagenet_scaling(model)
    model.trainable = False
    return model


#: the per-channel deviations EfficientNet's ImageNet weights are scaled by (keras.applications.efficientnet)
_EFFICIENTNET_STDDEV = (0.229, 0.224, 0.225)


def _fold_imagenet_scaling(model) -> None:
    """Give EfficientNet's Normalization the extra ``1/sqrt(stddev)`` scaling of the ImageNet build.

    ``(x - mean) / sqrt(var) * 1/sqrt(s)`` equals ``(x - mean) / sqrt(var * s)``.
    """
    import numpy as np

    norm = next(l for l in model.layers if type(l).__name__ == "Normalization")
    scale = np.asarray(_EFFICIENTNET_STDDEV, dtype="float32")
    # the layer keeps its statistics in adapt_variance and derives its broadcast ``variance`` from it
    norm.adapt_variance.assign(np.asarray(norm.adapt_variance) * scale)
    norm.finalize_state()


def backbone_blocks(backbone) -> list[tuple[str, list]]:
    """The backbone's layers grouped into blocks, in order: ("stem", […]), ("block1a", […]), …, ("top", […]).

    A layer belongs to the block its name names; layers Keras named itself
    (``re_lu_3``) belong to the block before them.
    """
    fam = FAMILIES[next(f for f in FAMILIES if FAMILIES[f].layer_name == backbone.name)]
    blocks: list[tuple[str, list]] = []
    current = "stem"
    for layer in backbone.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        m = re.match(fam.block_pattern, layer.name)
        if m:
            current = m.group(1)
        elif re.match(fam.top_pattern, layer.name):
            current = "top"
        if not blocks or blocks[-1][0] != current:
            blocks.append((current, []))
        blocks[-1][1].append(layer)
    return blocks


def set_fine_tune(backbone, n_blocks: int) -> int:
    """Make the top ``n_blocks`` blocks trainable, every other layer and every BatchNormalization frozen.

    A frozen BatchNormalization runs in inference mode in Keras 3, so its
    ImageNet statistics stay as they are while the weights around it adapt, as
    the Keras transfer-learning guide advises.

    Returns:
        the number of trainable weights (scalars) after the change.
    """
    import keras

    blocks = backbone_blocks(backbone)
    backbone.trainable = n_blocks > 0
    top = {id(l) for _, layers in blocks[len(blocks) - n_blocks:] for l in layers} if n_blocks > 0 else set()
    for _, layers in blocks:
        for layer in layers:
            layer.trainable = id(layer) in top and not isinstance(layer, keras.layers.BatchNormalization)
    return sum(int(w.numpy().size) for w in backbone.trainable_weights)


def find_backbone(model):
    """The backbone nested in a cnndesk model, or None."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model) and layer.name in {f.layer_name for f in FAMILIES.values()}:
            return layer
    return None
