"""Scan a class-folder tree, decode its images once, split it, feed ``fit``.

The layout is the one of ``keras.utils.image_dataset_from_directory``::

    root/<class name>/<image files>

Everything here but :func:`make_tf_dataset` is TensorFlow-free, so a GUI
worker thread may scan while another thread owns TensorFlow.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageOps

from .errors import DatasetError, UserError
from .tasks import TaskState

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
COLOR_MODES = ("rgb", "grayscale")
AUGMENTATIONS = ("flip", "rotate", "zoom", "contrast", "brightness")

#: a class with fewer than this share of the largest class's images is "imbalanced"
IMBALANCE_RATIO = 0.5
#: more than this share of the image files (of the whole dataset, or of one class) unreadable: refused
MOST_UNREADABLE = 0.5
#: more than this share of the image files unreadable: a warning
SOME_UNREADABLE = 0.1
#: a class with fewer usable images than this: a warning (its validation accuracy means little)
FEW_IMAGES = 10
#: skipped files listed one by one on a terminal; the rest are counted
SKIPPED_SHOWN = 5


def parse_image_size(text: str, largest: int = 1024) -> tuple[int, int]:
    """"64" -> (64, 64); "96x128" (or "96×128") -> (96, 128), each side from 8 to ``largest``.

    Raises:
        UserError: not a size, or out of range.
    """
    t = str(text).strip().lower().replace("×", "x").replace(" ", "")
    try:
        if "x" in t:
            h, w = (int(v) for v in t.split("x"))
        else:
            h = w = int(t)
    except ValueError:
        raise UserError(f"image size must be N or HxW, e.g. 64 or 96x128 (got {text!r})") from None
    if not (8 <= h <= largest and 8 <= w <= largest):
        raise UserError(f"image size must be between 8 and {largest} pixels")
    return h, w


@dataclass(frozen=True)
class Preprocessing:
    """How a file becomes the array a model sees.

    Args:
        image_size: (height, width) in pixels.
        color_mode: "rgb" (3 channels) or "grayscale" (1 channel).
        scale: factor applied to the 0-255 pixels before the model. Models
            built by cnndesk scale inside the model, so this is 1.0; a model
            from elsewhere may expect 1/255. Defaults to 1.0.
    """

    image_size: tuple[int, int] = (64, 64)
    color_mode: str = "rgb"
    scale: float = 1.0

    @property
    def channels(self) -> int:
        return 3 if self.color_mode == "rgb" else 1

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.image_size[0], self.image_size[1], self.channels)

    def to_json(self) -> dict:
        return {"image_size": list(self.image_size), "color_mode": self.color_mode, "scale": self.scale}

    @classmethod
    def from_json(cls, d: dict) -> "Preprocessing":
        return cls(tuple(int(v) for v in d["image_size"]), d.get("color_mode", "rgb"), float(d.get("scale", 1.0)))


@dataclass(frozen=True)
class DatasetConfig:
    """Settings of the dataset panel.

    Args:
        preprocessing: image size and colour mode.
        val_split: share of each class kept for validation. Defaults to 0.2.
        seed: seed of the split and the shuffle. Defaults to 1337.
        augment: names from ``AUGMENTATIONS`` applied in training only.
        class_weights: weight the loss by inverse class frequency.
    """

    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    val_split: float = 0.2
    seed: int = 1337
    augment: tuple[str, ...] = ()
    class_weights: bool = False

    def to_json(self) -> dict:
        d = asdict(self)
        d["preprocessing"] = self.preprocessing.to_json()
        d["augment"] = list(self.augment)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "DatasetConfig":
        return cls(
            preprocessing=Preprocessing.from_json(d["preprocessing"]),
            val_split=float(d.get("val_split", 0.2)),
            seed=int(d.get("seed", 1337)),
            augment=tuple(d.get("augment", ())),
            class_weights=bool(d.get("class_weights", False)),
        )


@dataclass(frozen=True)
class SkippedFile:
    """A file or folder that was not read, and why (a sentence a person understands)."""

    path: str
    reason: str

    @property
    def kind(self) -> str:
        """The reason without its details, to count skipped files by: "damaged image", "not an image file type"."""
        cut = len(self.reason)
        for mark in (":", " ("):
            i = self.reason.find(mark)
            if i > 0:
                cut = min(cut, i)
        return self.reason[:cut]


def count_skipped(skipped: Sequence[SkippedFile]) -> dict[str, int]:
    """How many files were skipped for each kind of reason, most first."""
    return dict(Counter(s.kind for s in skipped).most_common())


def describe_skipped(skipped: Sequence[SkippedFile], shown: int = SKIPPED_SHOWN) -> list[str]:
    """A few lines for a terminal: the counts by reason, the first ``shown`` files, how many more.

    Tens of thousands of skipped files still make at most ``shown + 2`` lines.
    """
    if not skipped:
        return []
    counts = ", ".join(f"{n:,} {kind}" for kind, n in count_skipped(skipped).items())
    lines = [f"skipped {len(skipped):,} file{'s' if len(skipped) != 1 else ''}: {counts}"]
    lines += [f"  {printable(s.path)}: {printable(s.reason)}" for s in skipped[:shown]]
    if len(skipped) > shown:
        lines.append(f"  … and {len(skipped) - shown:,} more (the full list: --json, or the app's dataset panel)")
    return lines


def printable(name: str) -> str:
    """A file or class name as it can be shown: newlines, control characters and
    undecodable bytes (kept by Python as surrogates) escaped, e.g. ``cat\\nmeow``, ``caf\\xe9``.

    Names are kept as they are everywhere else (so files are found and projects
    reopen with the same names); only what is shown is escaped.
    """
    if name.isprintable():
        return name
    try:
        text = os.fsencode(name).decode("utf-8", "backslashreplace")
    except (UnicodeError, TypeError, ValueError):
        text = name.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


@dataclass
class DatasetScan:
    """The files of a dataset folder, before decoding."""

    root: Path
    class_names: list[str]
    files: list[tuple[Path, int]]
    skipped: list[SkippedFile]
    not_followed: list[SkippedFile] = field(default_factory=list)  # links out of the dataset folder


@dataclass
class LoadedDataset:
    """Decoded images of a dataset: a uint8 cache and the split.

    ``images`` has shape (N, H, W, C), dtype uint8; ``labels`` (N,) int32.
    """

    root: Path
    class_names: list[str]
    preprocessing: Preprocessing
    images: np.ndarray
    labels: np.ndarray
    paths: list[str]
    skipped: list[SkippedFile]
    train_index: np.ndarray
    val_index: np.ndarray
    notes: list[str] = field(default_factory=list)  # warnings found while reading, e.g. unreadable files

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def counts(self) -> dict[str, int]:
        c = Counter(self.labels.tolist())
        return {name: c.get(i, 0) for i, name in enumerate(self.class_names)}

    def imbalance_warning(self) -> str | None:
        """A sentence if the smallest class is much smaller than the largest."""
        counts = self.counts()
        most = max(counts.values())
        small = [n for n, c in counts.items() if c < IMBALANCE_RATIO * most]
        if not small:
            return None
        names = ", ".join(f"{printable(n)} ({counts[n]})" for n in small)
        return (f"Classes are imbalanced: {names} have less than half the images of the "
                f"largest class ({most}). Consider adding images or turning on class weights.")

    def warnings(self) -> list[str]:
        """Every warning about this dataset, each a sentence: what was found while
        reading (unreadable files, links not followed), imbalance, classes with few images."""
        out = list(self.notes)
        counts = self.counts()
        few = [f"{printable(n)} ({c})" for n, c in counts.items() if c < FEW_IMAGES]
        if few:
            out.append(f"Few images: {', '.join(few)} {'has' if len(few) == 1 else 'have'} fewer than {FEW_IMAGES} "
                       "usable images, so their validation accuracy means little. Add images.")
        imbalance = self.imbalance_warning()
        if imbalance:
            out.append(imbalance)
        return out

    def class_weight(self) -> dict[int, float]:
        """Inverse-frequency weights over the training split, mean 1."""
        c = Counter(self.labels[self.train_index].tolist())
        n = len(self.train_index)
        k = self.num_classes
        return {i: n / (k * max(c.get(i, 0), 1)) for i in range(k)}

    def subset(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.images[index], self.labels[index]


# ---------------------------------------------------------------------------
# scanning

def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__")


def scan_dataset(root: str | os.PathLike, state: TaskState | None = None,
                 follow_outside_links: bool = False) -> DatasetScan:
    """List the class folders and image files of ``root`` without decoding.

    Hidden files and folders are skipped; files with other extensions are
    listed as skipped. Links (to folders or files) inside the dataset folder
    are followed once: a link back to the dataset folder, one of its parents,
    another class folder or a folder already read is listed as skipped and not
    followed. Links that lead out of the dataset folder (say to ``/usr/share``)
    are not followed unless ``follow_outside_links``: they are listed in
    ``not_followed`` and as skipped.

    Raises:
        DatasetError: the folder is missing, is a file, or has no class folders.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"The folder {root} does not exist. Choose a folder that holds one subfolder per class.")
    if not root.is_dir():
        raise DatasetError(f"{root} is a file, not a folder. Choose the folder that holds one subfolder per class.")
    real_root = root.resolve()
    not_followed: list[SkippedFile] = []

    def allowed(p: Path) -> bool:
        """False (and noted) for a link out of the dataset folder, unless such links are followed."""
        if follow_outside_links or not p.is_symlink():
            return True
        target = p.resolve()
        if target == real_root or real_root in target.parents:
            return True
        what = "folder" if p.is_dir() else "file"
        not_followed.append(SkippedFile(str(p), f"link outside the dataset folder (a {what} link to "
                                                f"{printable(str(target))}); not followed"))
        return False

    try:
        class_dirs = sorted(
            (p for p in root.iterdir() if p.is_dir() and not _is_hidden(p.name) and allowed(p)), key=lambda p: p.name
        )
    except PermissionError:
        raise DatasetError(f"cnndesk may not read the folder {root}. Check its permissions.") from None
    if not class_dirs:
        loose = [p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
        hint = " It holds images directly: put each class's images in a subfolder named after the class." if loose else ""
        links = (f" {len(not_followed)} class folder link(s) lead out of the dataset folder and were not followed."
                 if not_followed else "")
        raise DatasetError(f"{root} has no class subfolders.{hint}{links} The expected layout is "
                           f"{root.name}/<class>/<images>.")

    files: list[tuple[Path, int]] = []
    skipped: list[SkippedFile] = []
    # a folder link must not lead back to the dataset folder, one of its parents,
    # or another class folder: that would loop, or file one class's images under another
    outside = _folder_keys([root, *root.resolve().parents])
    for label, class_dir in enumerate(class_dirs):
        if state is not None and state.is_interruption_requested():
            from .errors import Cancelled
            raise Cancelled()
        others = _folder_keys(d for d in class_dirs if d != class_dir)
        for path in _walk_files(class_dir, skipped, outside | others, allowed):
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                files.append((path, label))
            else:
                skipped.append(SkippedFile(str(path), f"not an image file type cnndesk reads ({path.suffix or 'no extension'})"))
    return DatasetScan(root, [p.name for p in class_dirs], files, not_followed + skipped, not_followed)


def _folder_keys(folders: Iterable[Path]) -> set[tuple[int, int]]:
    keys = set()
    for d in folders:
        try:
            st = d.stat()
        except OSError:
            continue
        keys.add((st.st_dev, st.st_ino))
    return keys


def _walk_files(folder: Path, skipped: list[SkippedFile], excluded: set[tuple[int, int]] = frozenset(),
                allowed=lambda p: True) -> Iterable[Path]:
    """Files under ``folder`` in sorted order, skipping hidden entries, loops and entries not ``allowed``.

    A folder (reached through a link) that was already read, or whose key is in
    ``excluded``, is listed as skipped and not entered.
    """
    seen: set[tuple[int, int]] = set()
    stack = [folder]
    out: list[Path] = []
    while stack:
        d = stack.pop()
        try:
            st = d.stat()
        except OSError as e:
            skipped.append(SkippedFile(str(d), f"cannot read folder: {e.strerror}"))
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen or key in excluded:
            skipped.append(SkippedFile(str(d), "folder link leads back to the dataset, one of its parents or a "
                                               "folder already read; not followed"))
            continue
        seen.add(key)
        try:
            entries = sorted(d.iterdir(), key=lambda p: p.name)
        except OSError as e:
            skipped.append(SkippedFile(str(d), f"cannot read folder: {e.strerror}"))
            continue
        subdirs = []
        for e in entries:
            if _is_hidden(e.name) or not allowed(e):
                continue
            if e.is_dir():
                subdirs.append(e)
            elif e.is_file():
                out.append(e)
        stack.extend(reversed(subdirs))
    return sorted(out)


# ---------------------------------------------------------------------------
# decoding

def decode_image(source, preprocessing: Preprocessing) -> np.ndarray:
    """Open an image file (or PIL image, or array) and prepare it for the model.

    EXIF orientation is applied; GIFs give their first frame; palette, RGBA
    (composited on white), 16-bit and CMYK images are converted to the colour
    mode; the result is resized (bilinear, area-aware) to ``preprocessing.image_size``.
    Large JPEGs are decoded at 1/2, 1/4 or 1/8 scale when that still leaves at
    least the target size.
    This is the one function that prepares images for training and for
    prediction, so both see the same pixels.

    Returns:
        uint8 array of shape (H, W, C).

    Raises:
        UserError: with a reason a person understands.
    """
    img = _open(source, preprocessing)
    return np.asarray(img, dtype=np.uint8).reshape(preprocessing.input_shape)


def _open(source, preprocessing: Preprocessing) -> Image.Image:
    if isinstance(source, np.ndarray):
        arr = source
        if arr.dtype != np.uint8:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        return _prepare(Image.fromarray(arr.squeeze(-1) if arr.ndim == 3 and arr.shape[-1] == 1 else arr), preprocessing)
    if isinstance(source, Image.Image):
        return _prepare(source, preprocessing)
    h, w = preprocessing.image_size
    path = str(source)
    try:
        # Pillow itself refuses images over twice its limit; between one and two times it only
        # warns. Check the size here instead of turning the warning into an error with
        # warnings.catch_warnings, which is not thread-safe (decoding runs in threads) and
        # left the "error" filter installed for the whole process.
        with Image.open(path) as img:
            limit = Image.MAX_IMAGE_PIXELS
            if limit and img.size[0] * img.size[1] > limit:
                raise Image.DecompressionBombError(path)
            if img.format == "JPEG":
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale (DCT scaling) when the file is much
                # larger than needed: Pillow picks the smallest scale that still leaves at least
                # the requested size, and ``_prepare`` then resizes with an area-aware filter.
                # The request is in stored pixels: swap it when EXIF will turn the image by 90°.
                turned = _orientation(img) in (5, 6, 7, 8)
                img.draft("RGB" if preprocessing.color_mode == "rgb" else "L", (h, w) if turned else (w, h))
            img.load()
            # everything that reads the file happens inside ``with``, so no file stays open
            return _prepare(img, preprocessing, copy=True)
    except Image.DecompressionBombError:
        raise UserError("image is too large (over Pillow's decompression-bomb limit); refused") from None
    except FileNotFoundError:
        raise UserError("file not found") from None
    except PermissionError:
        raise UserError("permission denied") from None
    except IsADirectoryError:
        raise UserError("is a folder, not an image") from None
    except Image.UnidentifiedImageError:
        raise UserError("not a readable image (unknown or damaged format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError(f"damaged image: {e}") from None


def _prepare(img: Image.Image, preprocessing: Preprocessing, copy: bool = False) -> Image.Image:
    """First frame, EXIF orientation, colour mode and size; ``copy`` detaches the result from its file."""
    h, w = preprocessing.image_size
    try:
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
        # exif_transpose copies the whole image even when there is nothing to turn: ask first
        out = ImageOps.exif_transpose(img) if _orientation(img) != 1 else img
        out = _to_mode(out, preprocessing.color_mode)
        if out.size != (w, h):
            out = out.resize((w, h), Image.Resampling.BILINEAR)
        if copy and out is img:
            out = img.copy()
    except (OSError, ValueError, SyntaxError) as e:
        raise UserError(f"damaged image: {e}") from None
    return out


def _orientation(img: Image.Image) -> int:
    """The EXIF (or XMP) orientation tag, 1 (upright) when absent or unreadable.

    Reads the same tag as ``ImageOps.exif_transpose``. A damaged EXIF block
    does not make an otherwise readable image unusable: it counts as upright.
    """
    try:
        value = img.getexif().get(0x0112, 1)
        return int(value) if value in (1, 2, 3, 4, 5, 6, 7, 8) else 1
    except Exception:
        return 1


def _to_mode(img: Image.Image, color_mode: str) -> Image.Image:
    target = "RGB" if color_mode == "rgb" else "L"
    mode = img.mode
    if mode == target:
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0, 0, 255).astype(np.uint8), "L")
        return img if target == "L" else img.convert("RGB")
    # a palette image goes through RGBA whether or not it has a transparent colour:
    # without one, every pixel is opaque and the white background does not show
    if mode in ("RGBA", "LA", "PA", "P"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert(target)


def _decode_or_reason(path: Path, preprocessing: Preprocessing) -> np.ndarray | str:
    try:
        return decode_image(path, preprocessing)
    except UserError as e:
        return str(e)
    except Exception as e:  # a decoder bug must not stop a whole scan
        return f"cannot decode: {type(e).__name__}: {e}"


def load_dataset(
    root: str | os.PathLike,
    config: DatasetConfig | None = None,
    state: TaskState | None = None,
    workers: int | None = None,
    follow_outside_links: bool = False,
) -> LoadedDataset:
    """Scan ``root``, decode every image once, and split it.

    This is the one function that turns a folder into training data; the
    pipeline that feeds ``fit`` is :func:`make_tf_dataset` on its result.

    Args:
        root: the dataset folder.
        config: image size, colour mode, split and seed. Defaults to ``DatasetConfig()``.
        state: receives progress; its interruption request cancels the load.
        workers: decoding threads. Defaults to the number of CPUs (Pillow
            releases the GIL while decoding).
        follow_outside_links: also read class folders and files that are
            links out of ``root``. Defaults to False.

    Raises:
        DatasetError: the folder cannot be used, with what to do about it.
        Cancelled: ``state`` asked to stop.
    """
    from .errors import Cancelled

    config = config or DatasetConfig()
    scan = scan_dataset(root, state, follow_outside_links)
    pre = config.preprocessing
    n = len(scan.files)
    images = np.empty((n,) + pre.input_shape, dtype=np.uint8)
    ok = np.zeros(n, dtype=bool)
    skipped = list(scan.skipped)
    workers = workers or min(8, os.cpu_count() or 2)
    if state is not None:
        state.set_status(f"Reading {n} images…")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        chunk = 64
        for start in range(0, n, chunk):
            if state is not None and state.is_interruption_requested():
                raise Cancelled()
            part = scan.files[start:start + chunk]
            for i, result in enumerate(pool.map(lambda f: _decode_or_reason(f[0], pre), part), start):
                if isinstance(result, str):
                    skipped.append(SkippedFile(str(scan.files[i][0]), result))
                else:
                    images[i] = result
                    ok[i] = True
            if state is not None:
                state.set_progress_value(100.0 * min(start + chunk, n) / max(n, 1))

    labels_all = np.array([lab for _, lab in scan.files], dtype=np.int32)
    idx = np.flatnonzero(ok)
    images = images[idx] if len(idx) < n else images
    labels = labels_all[idx]
    paths = [str(scan.files[i][0]) for i in idx]

    counts = Counter(labels.tolist())
    empty = [name for i, name in enumerate(scan.class_names) if counts.get(i, 0) == 0]
    usable = len(scan.class_names) - len(empty)
    if usable < 2:
        raise DatasetError(
            f"{scan.root} has {usable} class with usable images; at least 2 are needed. "
            "Add a subfolder of images for each class you want to recognise.")
    if empty:
        raise DatasetError(
            f"The class folder(s) {', '.join(repr(e) for e in empty)} have no usable image. "
            "Add images to them or remove them from the dataset folder.")
    notes = _check_readable(scan, labels_all, ok, skipped)
    if config.val_split > 0:
        single = [printable(name) for i, name in enumerate(scan.class_names) if counts.get(i, 0) < 2]
        if single:
            raise DatasetError(
                f"The class{'es' if len(single) > 1 else ''} {', '.join(single)} "
                f"{'have' if len(single) > 1 else 'has'} only 1 usable image: too few to split, since at least 2 "
                "are needed to keep one for validation. Add images, or set the validation split to 0.")

    train_index, val_index = split_indices(labels, config.val_split, config.seed)
    return LoadedDataset(scan.root, scan.class_names, pre, images, labels, paths, skipped, train_index, val_index,
                         notes)


def _check_readable(scan: DatasetScan, labels_all: np.ndarray, ok: np.ndarray,
                    skipped: Sequence[SkippedFile]) -> list[str]:
    """Refuse a dataset most of whose image files could not be read; warnings for fewer losses and links.

    Files of other types do not count: only image files that failed to decode.

    Raises:
        DatasetError: more than ``MOST_UNREADABLE`` of all image files, or of one
            class's, could not be read.
    """
    total, failed = len(ok), int((~ok).sum())
    first = next((s for s in skipped if s.path == str(scan.files[int(np.argmin(ok))][0])), None) if failed else None
    example = f" (the first: {printable(first.path)}: {first.reason})" if first else ""
    if total and failed > MOST_UNREADABLE * total:
        raise DatasetError(
            f"{failed:,} of the {total:,} image files in {printable(str(scan.root))} ({failed / total:.1%}) could not "
            f"be read{example}; only {total - failed:,} are left. Training on them would report a meaningless "
            "accuracy: fix or remove the unreadable files (was the folder being written or copied?).")
    for i, name in enumerate(scan.class_names):
        mine = labels_all == i
        n, bad = int(mine.sum()), int((mine & ~ok).sum())
        if n and bad > MOST_UNREADABLE * n:
            raise DatasetError(
                f"{bad:,} of the {n:,} image files of the class {printable(name)} ({bad / n:.1%}) could not be read; "
                f"only {n - bad:,} are left. Fix or remove the unreadable files.")
    notes = []
    if total and failed > SOME_UNREADABLE * total:
        notes.append(f"{failed:,} of the {total:,} image files ({failed / total:.1%}) could not be read{example}; "
                     "see the skipped files.")
    if scan.not_followed:
        shown = ", ".join(printable(s.path) for s in scan.not_followed[:SKIPPED_SHOWN])
        more = f" and {len(scan.not_followed) - SKIPPED_SHOWN:,} more" if len(scan.not_followed) > SKIPPED_SHOWN else ""
        notes.append(f"{len(scan.not_followed):,} link(s) out of the dataset folder were not followed: {shown}{more}. "
                     "Copy what they lead to into the dataset folder, or allow links out of it "
                     "(cnndesk-cli train --follow-outside-links).")
    return notes


def split_indices(labels: np.ndarray, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split: each class keeps ``val_split`` for validation.

    Every class with at least 2 images gets at least one validation and one
    training image when ``val_split`` > 0.
    """
    if not 0.0 <= val_split < 1.0:
        raise UserError(f"The validation split must be between 0 and 1 (got {val_split}).")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rng.shuffle(members)
        k = int(round(len(members) * val_split))
        if val_split > 0 and len(members) >= 2:
            k = min(max(k, 1), len(members) - 1)
        val.append(members[:k])
        train.append(members[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


# ---------------------------------------------------------------------------
# tf.data

def make_tf_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    batch_size: int,
    *,
    training: bool,
    seed: int = 0,
    augment: Sequence[str] = (),
    repeat: bool = False,
    index: np.ndarray | None = None,
):
    """The one pipeline from the uint8 cache to ``fit``.

    Batches of (float32 images in 0-255, one-hot labels), with static shapes
    (None, H, W, C) and (None, num_classes). Only row numbers flow through
    ``tf.data``: they are shuffled (in training: every pass, seeded) and
    batched, and each batch's images are gathered from ``images`` in NumPy.
    The cache is read in place, never copied, and no shuffle buffer holds
    images: for 1600 training images at 224x224 this took the pipeline from
    about +714 MiB to +63 MiB. The gather runs on the host (also under a
    ``tf.distribute`` strategy, which then splits each global batch). The
    augmentation layers run in training only, never in the saved model.
    Autotune is off and prefetch fixed: on small CPUs autotune stalled epoch
    starts by seconds (see docs/tensorflow-notes.md).

    Args:
        images: the uint8 cache, shape (N, H, W, C), e.g. ``LoadedDataset.images``.
        labels: (N,) class ids.
        num_classes: length of the one-hot labels.
        batch_size: images per batch (the global batch under a strategy).
        training: shuffle every pass and apply ``augment``; when False the
            rows come in the order of ``index``.
        seed: seed of the shuffle and the augmentation. Defaults to 0.
        augment: names from ``AUGMENTATIONS``. Defaults to none.
        repeat: repeat forever (use with ``steps_per_epoch``) so ``fit`` keeps
            one iterator across epochs. Defaults to False.
        index: the rows of ``images``/``labels`` to use, e.g.
            ``LoadedDataset.train_index``. Defaults to all rows.

    Example::

        ds = make_tf_dataset(data.images, data.labels, data.num_classes, 32,
                             training=True, seed=1337, repeat=True, index=data.train_index)
    """
    import tensorflow as tf

    images = np.asarray(images)  # an ndarray passes through uncopied
    if images.ndim != 4 or len(images) != len(labels):
        raise ValueError(f"images must be (N, H, W, C) with one label each; got {images.shape} and "
                         f"{len(labels)} labels")
    with tf.device("/CPU:0"):  # the pipeline runs on the host; so does the layers' random state
        aug = augmentation_layers(augment, seed) if training and augment else None
    labels = np.asarray(labels, dtype=np.int32)  # (N,): small; ``images`` is never copied
    rows = np.arange(len(labels), dtype=np.int64) if index is None else np.asarray(index, dtype=np.int64)
    if rows.ndim != 1:
        raise ValueError(f"index must be one-dimensional; got shape {rows.shape}")
    if len(rows) and (rows.min() < 0 or rows.max() >= len(labels)):
        raise ValueError(f"index holds rows outside 0..{len(labels) - 1}")
    image_shape = tuple(int(d) for d in images.shape[1:])
    image_dtype = tf.as_dtype(images.dtype)

    ds = tf.data.Dataset.from_tensor_slices(rows)
    if training:
        ds = ds.shuffle(max(len(rows), 1), seed=seed, reshuffle_each_iteration=True)
    # batch before repeat: each pass is one epoch of ceil(n / batch) batches, every image once
    ds = ds.batch(batch_size)
    if repeat:
        ds = ds.repeat()

    # TensorFlow keeps every function given to ``numpy_function`` for the life of the process (it ties it
    # to the eager context's global graph): ``gather`` reads the arrays through ``source``, which
    # ``release_tf_dataset`` empties, so that a dataset that is done with does not keep its images.
    source = [images, labels]

    def gather(batch_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # plain NumPy, called by tf.data on one of its threads; must not touch TensorFlow
        cached_images, cached_labels = source
        return cached_images[batch_rows], cached_labels[batch_rows]

    # no AutoGraph: nothing here needs it, and it re-reads source files (absent in a frozen app)
    @tf.autograph.experimental.do_not_convert
    def prepare(batch_rows):
        x, y = tf.numpy_function(gather, [batch_rows], (image_dtype, tf.int32), stateful=False,
                                 name="gather_cached_images")
        x = tf.ensure_shape(x, (None, *image_shape))
        y = tf.ensure_shape(y, (None,))
        x = tf.cast(x, tf.float32)
        if aug is not None:
            x = aug(x, training=True)
            x = tf.clip_by_value(x, 0.0, 255.0)
        return x, tf.one_hot(y, num_classes)

    ds = ds.map(prepare, num_parallel_calls=2 if aug is not None else 1)
    ds = ds.prefetch(2)
    options = tf.data.Options()
    options.autotune.enabled = False
    options.deterministic = True
    ds = ds.with_options(options)
    ds._cnndesk_source = source
    return ds


def release_tf_dataset(*datasets) -> None:
    """Let datasets made by :func:`make_tf_dataset` drop their arrays; they cannot be read after this.

    Without it the images stay in memory until the process ends, even when
    nothing else uses them (see :func:`make_tf_dataset`). ``None`` is ignored.
    """
    for ds in datasets:
        source = getattr(ds, "_cnndesk_source", None)
        if source is not None:
            source.clear()


def augmentation_layers(augment: Sequence[str], seed: int = 0):
    """A Keras Sequential of the chosen random preprocessing layers."""
    import keras

    unknown = set(augment) - set(AUGMENTATIONS)
    if unknown:
        raise UserError(f"Unknown augmentation {', '.join(sorted(unknown))}; choose from {', '.join(AUGMENTATIONS)}.")
    layers = []
    if "flip" in augment:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if "rotate" in augment:
        layers.append(keras.layers.RandomRotation(0.08, fill_mode="reflect", seed=seed))
    if "zoom" in augment:
        layers.append(keras.layers.RandomZoom(0.15, fill_mode="reflect", seed=seed))
    if "contrast" in augment:
        layers.append(keras.layers.RandomContrast(0.2, value_range=(0, 255), seed=seed))
    if "brightness" in augment:
        layers.append(keras.layers.RandomBrightness(0.15, value_range=(0, 255), seed=seed))
    return keras.Sequential(layers, name="augmentation")


def steps_for(n: int, batch_size: int) -> int:
    return max(1, math.ceil(n / batch_size))
