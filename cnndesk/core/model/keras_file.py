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
same config checks through :mod:`.h5_file`.
"""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path, PurePosixPath

from ..errors import ModelFileError
from .config_checks import LIMITS, Limits, shown_name, check_config, check_parameters, parse_config, size_text
from .h5_file import check_h5_file
from .labels import LABELS_FILE, parse_labels

#: members a Keras 3 model file may hold (besides folders and files under ``assets/``); cnndesk adds labels.txt
KNOWN_MEMBERS = ("metadata.json", "config.json", "model.weights.h5", "model.weights.npz", LABELS_FILE)


#: suffixes of the legacy (Keras 2) single-file HDF5 format
H5_SUFFIXES = (".h5", ".hdf5")


#: every model file suffix cnndesk opens
MODEL_SUFFIXES = (".keras",) + H5_SUFFIXES


#: what to tell someone whose model cannot be read layer by layer
CONVERT_ADVICE = ("load it in TensorFlow where it was made (tf.keras.models.load_model, TensorFlow 2.15 or "
                  "earlier for a Keras 2 model) and save it as .keras or .h5, or export it as .keras from the tool "
                  "that made it")


ASSETS_FOLDER = "assets/"


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
        return check_h5_file(path, limits)
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not a readable .keras model: the file is damaged or truncated.")
    return check_model_file(path, limits)


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
                raise ModelFileError(f"{name} holds a member named {shown_name(member)} that points outside the archive "
                                     "(path traversal); a Keras model file never does. Refused.")
            if not _is_known(member):
                raise ModelFileError(f"{name} holds an unexpected member {shown_name(member)}; a Keras model file holds "
                                     "only config.json, metadata.json, model.weights.h5, assets/ and cnndesk's "
                                     "labels.txt. Refused.")
            if member in seen:
                raise ModelFileError(f"{name} holds the member {shown_name(member)} twice; a Keras model file never "
                                     "does. Refused.")
            seen.add(member)
            if info.flag_bits & 0x1:
                raise ModelFileError(f"{name} holds an encrypted member {shown_name(member)}; cnndesk cannot read it.")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                                          zipfile.ZIP_LZMA):
                raise ModelFileError(f"{name} uses an unknown compression (method {info.compress_type}) for "
                                     f"{shown_name(member)}; it is damaged or not a Keras model file.")
            if info.header_offset + info.compress_size > disk_size:
                raise ModelFileError(f"{name} is not a readable .keras model: its member {shown_name(member)} declares "
                                     f"{size_text(info.compress_size)} stored but the file has only {size_text(disk_size)} "
                                     "(damaged or truncated).")
            limit = {"config.json": limits.config_bytes, "metadata.json": limits.metadata_bytes,
                     LABELS_FILE: limits.metadata_bytes}.get(member, limits.weights_bytes)
            if info.file_size > limit:
                raise ModelFileError(f"{name}: {member} would inflate to {size_text(info.file_size)}, over the limit of "
                                     f"{size_text(limit)} for that member. Refused.")
            # config.json, metadata.json and labels.txt have small limits of their own; text may compress well
            if (member not in ("config.json", "metadata.json", LABELS_FILE) and info.file_size > limits.ratio_floor
                    and info.file_size > limits.ratio * max(info.compress_size, 1)):
                ratio = info.file_size / max(info.compress_size, 1)
                raise ModelFileError(f"{name}: {member} would inflate {ratio:,.0f}-fold (from "
                                     f"{size_text(info.compress_size)} to {size_text(info.file_size)}), over the limit of "
                                     f"{limits.ratio:,.0f}-fold: a decompression bomb. Refused.")
            total += info.file_size
        if total > limits.total_bytes:
            raise ModelFileError(f"{name} would inflate to {size_text(total)} in all, over the limit of "
                                 f"{size_text(limits.total_bytes)}. Refused.")
        if "model.weights.h5" not in seen and "model.weights.npz" not in seen:
            raise ModelFileError(f"{name} is not a readable .keras model: it has no weights (model.weights.h5).")
        text = _read_bounded(zf, "config.json", limits.config_bytes, name)
    config = parse_config(text, name, limits)
    check_config(config, name, limits)
    weights = sum(i.file_size for i in infos if i.filename.startswith("model.weights."))
    check_parameters(config, name, weights)
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
        raise ModelFileError(f"{name} has an archive directory of {size_text(directory)}, over the limit of "
                             f"{size_text(most)}. Refused.")


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
        raise ModelFileError(f"{name}: {member} inflates past the limit of {size_text(most)}. Refused.")
    return data
