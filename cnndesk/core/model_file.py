"""Check a ``.keras`` file from a stranger before Keras reads any of it.

A ``.keras`` file is a zip archive holding ``metadata.json``, ``config.json``
(the layer graph), ``model.weights.h5`` (or ``.npz``) and, rarely, files under
``assets/``; one exported by cnndesk also holds its class names as
``labels.txt``. Keras trusts the archive: a 64 KB file whose config holds a 50 MB
layer name, a config or weights member that inflates to gigabytes, or member
names such as ``../../x`` made it run for minutes, take gigabytes of memory or
print raw library warnings. :func:`check_model_file` reads only the zip's
directory and a bounded, size-checked ``config.json``, and refuses with one
sentence (which limit, which value) whatever is out of the bounds below.

The bounds are far above what real models need: a keras.applications ResNet50
saved as ``.keras`` has a 176 KB config of 177 layers, nesting depth 11, no
string longer than 28 characters and 103 MB of weights stored uncompressed;
MobileNetV2 163 KB, 156 layers, 15 MB. See ``docs/model-files.md``.

Nothing here imports Keras or TensorFlow, so the check answers within a
fraction of a second, before the slow import. Legacy ``.h5`` files get the
same config checks through :mod:`.model_h5`.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import ModelFileError
from .labels import LABELS_FILE, parse_labels

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

#: members a Keras 3 model file may hold (besides folders and files under ``assets/``); cnndesk adds labels.txt
KNOWN_MEMBERS = ("metadata.json", "config.json", "model.weights.h5", "model.weights.npz", LABELS_FILE)
#: suffixes of the legacy (Keras 2) single-file HDF5 format
H5_SUFFIXES = (".h5", ".hdf5")
#: every model file suffix cnndesk opens
MODEL_SUFFIXES = (".keras",) + H5_SUFFIXES
#: layers whose config carries Python code; safe mode refuses to run it
CODE_LAYERS = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda"})
#: what to tell someone whose model cannot be read layer by layer
CONVERT_ADVICE = ("load it in TensorFlow where it was made (tf.keras.models.load_model, TensorFlow 2.15 or "
                  "earlier for a Keras 2 model) and save it as .keras or .h5, or export it as .keras from the tool "
                  "that made it")
ASSETS_FOLDER = "assets/"


@dataclass(frozen=True)
class Limits:
    """The bounds a model file must keep to; the defaults are documented in ``docs/model-files.md``.

    Args:
        members: most zip members. Keras writes 3. Defaults to 1000.
        config_bytes: largest ``config.json``. ResNet50's is 176 KB. Defaults to 16 MiB.
        metadata_bytes: largest ``metadata.json``, and of cnndesk's ``labels.txt``. Keras writes
            about 64 bytes. Defaults to 1 MiB.
        weights_bytes: largest weights member, uncompressed. ResNet50's is 103 MB,
            VGG16's 528 MB. Defaults to 2 GiB.
        total_bytes: largest sum of all members, uncompressed. Defaults to 3 GiB.
        ratio: most a weights or asset member over ``ratio_floor`` may inflate
            (uncompressed / stored). Keras stores weights uncompressed (ratio 1).
            Defaults to 100.
        ratio_floor: members smaller than this are not ratio-checked. Defaults to 1 MiB.
        depth: deepest nesting of lists and objects in the config. Real models: about 11.
            Defaults to 64.
        string_chars: longest string (or key) in the config. Real layer names are
            under 100 characters. Defaults to 10,000.
        layers: most layers, nested models included. Large keras.applications
            models have under 1,100. Defaults to 5,000.
        dimension: largest unit, filter, embedding or shape number in the config.
            Defaults to 65,536.
    """

    members: int = 1000
    config_bytes: int = 16 * MiB
    metadata_bytes: int = 1 * MiB
    weights_bytes: int = 2 * GiB
    total_bytes: int = 3 * GiB
    ratio: float = 100.0
    ratio_floor: int = 1 * MiB
    depth: int = 64
    string_chars: int = 10_000
    layers: int = 5_000
    dimension: int = 65_536


LIMITS = Limits()

#: config keys whose numbers size the weights; a huge one makes Keras allocate gigabytes
_SIZE_KEYS = frozenset({"units", "filters", "input_dim", "output_dim", "num_heads", "key_dim", "value_dim",
                        "batch_shape", "kernel_size", "depth_multiplier"})


def _size(n: int) -> str:
    """Bytes as a person reads them: 512 bytes, 1.5 MB, 2.0 GB."""
    if n < KiB:
        return f"{n} bytes"
    for unit, scale in (("GB", GiB), ("MB", MiB), ("KB", KiB)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"  # pragma: no cover


def _shown(name: str, most: int = 60) -> str:
    """A member name or string, escaped and shortened for a message."""
    text = ascii(name) if not name.isprintable() else repr(name)
    return text if len(text) <= most else text[:most] + "…'"


def _is_traversal(name: str) -> bool:
    if name.startswith(("/", "\\")) or "\\" in name or "\x00" in name:
        return True
    if len(name) >= 2 and name[1] == ":":  # a Windows drive, C:foo
        return True
    return any(part == ".." for part in PurePosixPath(name).parts)


def _is_known(name: str) -> bool:
    return name in KNOWN_MEMBERS or name.startswith(ASSETS_FOLDER)


def check_model_path(path: str | os.PathLike, limits: Limits = LIMITS) -> dict:
    """Check that ``path`` is a ``.keras`` or legacy ``.h5`` file within ``limits``; return its parsed config.

    A SavedModel folder is refused with advice on converting it: cnndesk needs
    the layer graph, which a SavedModel does not keep.

    Raises:
        ModelFileError: a folder, another kind of file, missing, damaged or out of bounds.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            raise ModelFileError(f"{path.name} is a TensorFlow SavedModel, which keeps no layers cnndesk can show. "
                                 f"To open it, {CONVERT_ADVICE}.")
        raise ModelFileError(f"{path} is a folder; open a .keras or .h5 model file (or a cnndesk project folder).")
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise ModelFileError(f"{path.name} is not a .keras model file; cnndesk opens Keras '.keras' files and "
                             "legacy '.h5' files.")
    if not path.is_file():
        raise ModelFileError(f"The model file {path} does not exist.")
    if suffix in H5_SUFFIXES:
        from .model_h5 import check_h5_file  # model_h5 builds on this module's config checks

        return check_h5_file(path, limits)
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not a readable .keras model: the file is damaged or truncated.")
    return check_model_file(path, limits)


def code_layers(config) -> list[str]:
    """The names of the classes in ``config`` that carry Python code (Lambda layers), once each."""
    found: list[str] = []
    for node in _dicts(config):
        cls = node.get("class_name")
        if cls in CODE_LAYERS and cls not in found:
            found.append(cls)
    return found


def code_refusal(name: str) -> str:
    """The one message for a model file whose layers carry code, ``.keras`` or ``.h5`` alike."""
    return f"{name} contains code (e.g. a Lambda layer) that cnndesk will not run from a file it did not make."


def _dicts(config):
    """Every dict in ``config``, walked without recursion."""
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def read_embedded_labels(path: str | os.PathLike, limits: Limits = LIMITS) -> list[str] | None:
    """The class names a ``.keras`` archive holds as ``labels.txt``, or None (a file cnndesk did not export).

    Call after :func:`check_model_path`, which bounds the member's size.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            if LABELS_FILE not in zf.namelist():
                return None
            data = _read_bounded(zf, LABELS_FILE, limits.metadata_bytes, Path(path).name)
    except (zipfile.BadZipFile, OSError):
        return None
    names = parse_labels(data.decode("utf-8", "replace"))
    return names or None


def check_model_file(path: str | os.PathLike, limits: Limits = LIMITS) -> dict:
    """Inspect the zip archive of a ``.keras`` file and return its parsed ``config.json``.

    Reads the zip's central directory and ``config.json`` (at most
    ``limits.config_bytes`` of it), never the weights.

    Raises:
        ModelFileError: one sentence naming the limit and the value, or the damage.
    """
    path = Path(path)
    name = path.name
    _check_directory(path, name, limits)  # before zipfile builds an object per member
    try:
        disk_size = path.stat().st_size
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as e:
        raise ModelFileError(f"{name} is not a readable .keras model: the file is damaged or truncated ({e}).") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.members:
            raise ModelFileError(f"{name} holds {len(infos):,} archive members; a Keras model file holds a few "
                                 f"(limit {limits.members:,}). Refused.")
        if "config.json" not in {i.filename for i in infos}:
            raise ModelFileError(f"{name} is not a readable .keras model: it has no config.json.")
        seen: set[str] = set()
        total = 0
        for info in infos:
            member = info.filename
            if _is_traversal(member):
                raise ModelFileError(f"{name} holds a member named {_shown(member)} that points outside the archive "
                                     "(path traversal); a Keras model file never does. Refused.")
            if not _is_known(member):
                raise ModelFileError(f"{name} holds an unexpected member {_shown(member)}; a Keras model file holds "
                                     "only config.json, metadata.json, model.weights.h5, assets/ and cnndesk's "
                                     "labels.txt. Refused.")
            if member in seen:
                raise ModelFileError(f"{name} holds the member {_shown(member)} twice; a Keras model file never "
                                     "does. Refused.")
            seen.add(member)
            if info.flag_bits & 0x1:
                raise ModelFileError(f"{name} holds an encrypted member {_shown(member)}; cnndesk cannot read it.")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                                          zipfile.ZIP_LZMA):
                raise ModelFileError(f"{name} uses an unknown compression (method {info.compress_type}) for "
                                     f"{_shown(member)}; it is damaged or not a Keras model file.")
            if info.header_offset + info.compress_size > disk_size:
                raise ModelFileError(f"{name} is not a readable .keras model: its member {_shown(member)} declares "
                                     f"{_size(info.compress_size)} stored but the file has only {_size(disk_size)} "
                                     "(damaged or truncated).")
            limit = {"config.json": limits.config_bytes, "metadata.json": limits.metadata_bytes,
                     LABELS_FILE: limits.metadata_bytes}.get(member, limits.weights_bytes)
            if info.file_size > limit:
                raise ModelFileError(f"{name}: {member} would inflate to {_size(info.file_size)}, over the limit of "
                                     f"{_size(limit)} for that member. Refused.")
            # config.json, metadata.json and labels.txt have small limits of their own; text may compress well
            if (member not in ("config.json", "metadata.json", LABELS_FILE) and info.file_size > limits.ratio_floor
                    and info.file_size > limits.ratio * max(info.compress_size, 1)):
                ratio = info.file_size / max(info.compress_size, 1)
                raise ModelFileError(f"{name}: {member} would inflate {ratio:,.0f}-fold (from "
                                     f"{_size(info.compress_size)} to {_size(info.file_size)}), over the limit of "
                                     f"{limits.ratio:,.0f}-fold: a decompression bomb. Refused.")
            total += info.file_size
        if total > limits.total_bytes:
            raise ModelFileError(f"{name} would inflate to {_size(total)} in all, over the limit of "
                                 f"{_size(limits.total_bytes)}. Refused.")
        if "model.weights.h5" not in seen and "model.weights.npz" not in seen:
            raise ModelFileError(f"{name} is not a readable .keras model: it has no weights (model.weights.h5).")
        text = _read_bounded(zf, "config.json", limits.config_bytes, name)
    config = _parse_config(text, name, limits)
    _check_config(config, name, limits)
    weights = sum(i.file_size for i in infos if i.filename.startswith("model.weights."))
    _check_parameters(config, name, weights)
    return config


def _check_directory(path: Path, name: str, limits: Limits) -> None:
    """Refuse an archive whose end record declares too many members or too large a directory.

    ``zipfile`` reads the whole central directory into one object per member;
    a file of a million empty members would take seconds and hundreds of MB.
    Reads only the end of the file (the end record, or its zip64 form).
    """
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            tail_start = max(0, size - (22 + 65535))
            f.seek(tail_start)
            tail = f.read()
            at = tail.rfind(b"PK\x05\x06")
            if at < 0 or len(tail) < at + 22:
                return  # zipfile gives the "damaged" answer
            entries, directory = struct.unpack("<HI", tail[at + 10:at + 16])
            if entries == 0xFFFF or directory == 0xFFFFFFFF:  # zip64: the numbers are in the zip64 end record
                loc = at - 20
                if loc < 0 or tail[loc:loc + 4] != b"PK\x06\x07":
                    return
                (record,) = struct.unpack("<Q", tail[loc + 8:loc + 16])
                f.seek(record)
                z64 = f.read(56)
                if len(z64) < 56 or z64[:4] != b"PK\x06\x06":
                    return
                entries, directory = struct.unpack("<QQ", z64[32:48])
    except OSError:
        return  # reported by the zipfile step
    if entries > limits.members:
        raise ModelFileError(f"{name} holds {entries:,} archive members; a Keras model file holds a few "
                             f"(limit {limits.members:,}). Refused.")
    most = limits.members * 1024  # a directory entry is 46 bytes plus the name, extra field and comment
    if directory > most:
        raise ModelFileError(f"{name} has an archive directory of {_size(directory)}, over the limit of "
                             f"{_size(most)}. Refused.")


def _read_bounded(zf: zipfile.ZipFile, member: str, most: int, name: str) -> bytes:
    """At most ``most`` bytes of ``member``; refuses a member that inflates past them."""
    try:
        with zf.open(member) as f:
            data = f.read(most + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as e:
        raise ModelFileError(f"{name} is not a readable .keras model: {member} is damaged ({e}).") from None
    except MemoryError:
        raise ModelFileError(f"{name}: {member} could not be read within the memory limit. Refused.") from None
    if len(data) > most:
        raise ModelFileError(f"{name}: {member} inflates past the limit of {_size(most)}. Refused.")
    return data


def _parse_config(data: bytes, name: str, limits: Limits):
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelFileError(f"{name} is not a readable .keras model: config.json is not UTF-8 text.") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise ModelFileError(f"{name}: config.json is nested deeper than Python can parse (limit "
                             f"{limits.depth} levels). Refused.") from None
    except ValueError as e:  # JSONDecodeError, and integers of thousands of digits
        raise ModelFileError(f"{name} is not a readable .keras model: config.json is not valid JSON ({e}).") from None


def _check_config(config, name: str, limits: Limits) -> None:
    """Depth, string lengths, layer count and size numbers of a parsed config, walked without recursion."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ModelFileError(f"{name} is not a readable .keras model: config.json does not describe a model.")
    layers = 0
    stack: list[tuple[object, int, str]] = [(config, 1, "")]
    while stack:
        node, depth, key = stack.pop()
        if depth > limits.depth:
            raise ModelFileError(f"{name}: config.json is nested more than {limits.depth} levels deep "
                                 "(real models: about 11). Refused.")
        if isinstance(node, dict):
            for k, v in node.items():
                if len(k) > limits.string_chars:
                    raise ModelFileError(f"{name}: config.json holds a key of {len(k):,} characters, over the "
                                         f"limit of {limits.string_chars:,}. Refused.")
                if k == "layers" and isinstance(v, list):
                    layers += len(v)
                    if layers > limits.layers:
                        raise ModelFileError(f"{name} describes more than {limits.layers:,} layers (limit "
                                             f"{limits.layers:,}). Refused.")
                stack.append((v, depth + 1, k))
        elif isinstance(node, list):
            stack.extend((v, depth + 1, key) for v in node)
        elif isinstance(node, str):
            if len(node) > limits.string_chars:
                what = "a layer name" if key == "name" else f"a string (in {key!r})" if key else "a string"
                raise ModelFileError(f"{name}: config.json holds {what} of {len(node):,} characters, over the "
                                     f"limit of {limits.string_chars:,}. Refused.")
        elif isinstance(node, (int, float)) and not isinstance(node, bool) and key in _SIZE_KEYS:
            if abs(node) > limits.dimension:
                raise ModelFileError(f"{name}: config.json sets {key!r} to {node:,}, over the limit of "
                                     f"{limits.dimension:,}. Refused.")


def _layer_parameters(layer: dict) -> int:
    """About how many weights a Dense, Conv or Embedding layer allocates, from its config and
    ``build_config``; 0 for other layers or when the input shape is not given."""
    cls, cfg = layer.get("class_name"), layer.get("config")
    if not isinstance(cfg, dict):
        return 0

    def number(v) -> int:
        return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0

    def product(v) -> int:
        if isinstance(v, int):
            return number(v)
        if isinstance(v, list) and v and all(number(x) for x in v):
            p = 1
            for x in v:
                p *= x
            return p
        return 0

    if cls == "Embedding":
        return number(cfg.get("input_dim")) * number(cfg.get("output_dim"))
    build = layer.get("build_config")
    shape = build.get("input_shape") if isinstance(build, dict) else None
    if not isinstance(shape, list) or not shape:
        return 0
    channels_first = cfg.get("data_format") == "channels_first" and len(shape) > 2
    inputs = number(shape[1] if channels_first else shape[-1])
    if cls == "Dense":
        return inputs * number(cfg.get("units"))
    if isinstance(cls, str) and cls.startswith(("Conv", "SeparableConv", "DepthwiseConv")):
        kernel = product(cfg.get("kernel_size"))
        if cls.startswith("DepthwiseConv"):
            return kernel * inputs * max(number(cfg.get("depth_multiplier")), 1)
        if cls.startswith("SeparableConv"):
            mult = max(number(cfg.get("depth_multiplier")), 1)
            return kernel * inputs * mult + inputs * mult * number(cfg.get("filters"))
        return kernel * inputs * number(cfg.get("filters"))
    return 0


def estimate_parameters(config) -> int:
    """The weights of every Dense and convolution layer anywhere in ``config`` (biases and norms not counted)."""
    total = 0
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            total += _layer_parameters(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return total


def _check_parameters(config, name: str, weights_bytes: int) -> None:
    """Refuse a config whose layers would allocate far more than its weights file holds.

    Keras creates a model's variables before it reads the weights, so a small
    file that describes, say, ``Dense(60000)`` after a large ``Flatten`` would
    take tens of GB. A real file holds about 4 bytes per parameter.
    """
    total = estimate_parameters(config)
    need = 4 * total
    if need > 2 * weights_bytes + 64 * MiB:
        raise ModelFileError(f"{name} describes layers of about {total:,} parameters ({_size(need)} of memory) but "
                             f"its weights file holds only {_size(weights_bytes)}: a memory bomb or a damaged "
                             "file. Refused.")


def unknown_classes(config, is_known=None) -> list[tuple[str, str]]:
    """The classes of ``config`` that Keras cannot build: (kind, name) pairs, in order, once each.

    An object of Keras's own has a ``module`` under ``keras``; a custom one
    (``@register_keras_serializable``) has a ``registered_name`` such as
    ``mine>Scale01`` and is known only if this process registered it.

    Args:
        config: a parsed ``config.json``.
        is_known: ``is_known(registered_name) -> bool``, e.g. via
            ``keras.saving.get_registered_object``. Without it (before Keras is
            imported) only classes that lived in the saving program itself
            (``module`` null or ``__main__``) count as unknown: cnndesk
            registers no classes of its own.
    """
    found: list[tuple[str, str]] = []
    stack: list[tuple[object, str]] = [(config, "")]
    while stack:
        node, key = stack.pop()
        if isinstance(node, dict):
            cls = node.get("class_name")
            # Keras's own markers ("__keras_tensor__", "__tuple__", ...) are not classes
            if (isinstance(cls, str) and "config" in node and not (cls.startswith("__") and cls.endswith("__"))
                    and ("module" in node or "registered_name" in node)):
                module = node.get("module")
                registered = node.get("registered_name")
                keras_own = isinstance(module, str) and (module == "keras" or module.startswith("keras."))
                if is_known is None and module not in (None, "__main__"):
                    keras_own = True  # a class from a package: only Keras can tell whether it loads
                if not keras_own:
                    label = registered if isinstance(registered, str) and registered else (
                        f"{module}.{node['class_name']}" if isinstance(module, str) else node["class_name"])
                    if is_known is None or not is_known(label):
                        kind = "layer" if key == "layers" else "object"
                        if (kind, label) not in found:
                            found.append((kind, label))
            stack.extend((v, k) for k, v in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend((v, key) for v in reversed(node))
    return found


def _class_of(label: str) -> str:
    """``mine>Scale01`` or ``my.module.Scale01`` -> ``Scale01``."""
    return label.split(">")[-1].rsplit(".", 1)[-1] or label


def describe_unknown(found: list[tuple[str, str]]) -> str:
    """"the model uses a layer cnndesk cannot load safely: Scale01 (custom code, registered as `mine>Scale01`)…"."""
    kind, label = found[0]
    cls = _class_of(label)
    where = f", registered as `{label}`" if label != cls else ""
    more = f" and {len(found) - 1} more custom class{'es' if len(found) > 2 else ''}" if len(found) > 1 else ""
    what = "a layer" if kind == "layer" else "an object"
    return (f"the model uses {what} cnndesk cannot load safely: {cls} (custom code{where}){more}; cnndesk loads "
            "only Keras's own layers, so use the model in the program that defines them")
