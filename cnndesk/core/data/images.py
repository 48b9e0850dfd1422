"""Image files: which ones are read, at what size, and how one becomes the array a model sees.

:func:`decode_image` is the one function that prepares a picture for training
and for prediction, so both see the same pixels. Everything here is
TensorFlow-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
COLOR_MODES = ("rgb", "grayscale")
#: the smallest and largest side, in pixels, of the images a model is trained on. Projects
#: written with any size in this range open unchanged in the app and the command line.
MIN_IMAGE_SIDE = 8
MAX_IMAGE_SIDE = 2048
#: the longest side of the picture of a viewed file (the model's input is separate and smaller)
DISPLAY_SIDE = 1024


def parse_image_size(text: str, largest: int = MAX_IMAGE_SIDE) -> tuple[int, int]:
    """"64" -> (64, 64); "96x128" (or "96×128") -> (96, 128), each side from ``MIN_IMAGE_SIDE`` to ``largest``.

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
    if not (MIN_IMAGE_SIDE <= h <= largest and MIN_IMAGE_SIDE <= w <= largest):
        raise UserError(f"image size must be between {MIN_IMAGE_SIDE} and {largest} pixels")
    return h, w


#: How the 0-255 pixels of an image become the numbers a model takes, by name. "-1-1", "caffe" and
#: "torch" are exactly keras.applications' ``preprocess_input`` modes "tf", "caffe" and "torch".
PIXEL_MODES = {
    "0-1": "0–1 (pixels / 255)",
    "-1-1": "−1–1 (pixels / 127.5 − 1)",
    "0-255": "0–255 (as read; the model scales itself)",
    "caffe": "caffe (BGR, ImageNet mean subtracted)",
    "torch": "torch (0–1, ImageNet mean and std)",
}
#: the ImageNet channel statistics of keras.applications' "caffe" (BGR, 0-255) and "torch" (RGB, 0-1) modes
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)
TORCH_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
TORCH_STD = np.array([0.229, 0.224, 0.225], np.float32)


@dataclass(frozen=True)
class Preprocessing:
    """How a file becomes the array a model sees.

    Args:
        image_size: (height, width) in pixels.
        color_mode: "rgb" (3 channels) or "grayscale" (1 channel).
        pixels: a key of ``PIXEL_MODES``: how the 0-255 pixels are turned into the model's numbers
            (``pixel_values``). Models built by cnndesk scale inside the model, so they take "0-255"
            (the default); a model from elsewhere may expect "0-1", "-1-1", "caffe" or "torch".
            "caffe" and "torch" need RGB images.

    Raises:
        UserError: an unknown pixel mode, or a per-channel one for grayscale images.
    """

    image_size: tuple[int, int] = (64, 64)
    color_mode: str = "rgb"
    pixels: str = "0-255"

    def __post_init__(self):
        if self.pixels not in PIXEL_MODES:
            raise UserError(f"unknown pixel preprocessing {self.pixels!r}; choose one of {', '.join(PIXEL_MODES)}")
        if self.pixels in ("caffe", "torch") and self.color_mode != "rgb":
            raise UserError(f"{self.pixels} preprocessing works on RGB images only (it treats each colour channel "
                            "separately)")

    @property
    def channels(self) -> int:
        return 3 if self.color_mode == "rgb" else 1

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.image_size[0], self.image_size[1], self.channels)

    def to_json(self) -> dict:
        return {"image_size": list(self.image_size), "color_mode": self.color_mode, "pixels": self.pixels}

    @classmethod
    def from_json(cls, d: dict) -> "Preprocessing":
        """Read ``to_json``'s dict, or an older one that gave a ``scale`` factor instead of ``pixels``.

        Older files said ``scale`` 1 (cnndesk's own models, which scale themselves: "0-255") or 1/255
        (a model from elsewhere fed 0-1), so each opens with the pixels it was used with.
        """
        pixels = d.get("pixels")
        if pixels is None:
            pixels = "0-255" if float(d.get("scale", 1.0)) == 1.0 else "0-1"
        return cls(tuple(int(v) for v in d["image_size"]), d.get("color_mode", "rgb"), str(pixels))

    def pixel_values(self, images_uint8: np.ndarray) -> np.ndarray:
        """The float32 numbers the model takes for prepared uint8 images ((H, W, C) or (N, H, W, C)).

        The same arithmetic, in the same float32 steps, as keras.applications' ``preprocess_input``
        for "-1-1" (mode "tf"), "caffe" and "torch", so the results are identical to it.
        """
        x = np.asarray(images_uint8, dtype=np.float32)
        if self.pixels == "0-1":
            return x / np.float32(255.0)
        if self.pixels == "-1-1":
            return x / np.float32(127.5) - np.float32(1.0)
        if self.pixels == "caffe":
            return x[..., ::-1] - CAFFE_MEAN_BGR
        if self.pixels == "torch":
            return (x / np.float32(255.0) - TORCH_MEAN) / TORCH_STD
        return x


#: keras.applications families that do not scale their own input, told apart by the names their
#: builders give to layers: (family, the layer names that all must be there, names that must not, pixels).
#: The first match wins, so a family whose names are a superset of another's comes first.
PIXEL_FAMILIES = (
    ("ResNet V2", ("conv1_conv", "conv2_block1_preact_bn"), (), "-1-1"),
    ("DenseNet", ("pool1", "conv2_block1_concat"), (), "torch"),  # ResNet has "pool1_pool", no concat
    ("ResNet", ("conv1_conv", "conv2_block1_1_conv"), (), "caffe"),
    ("Xception", ("block1_conv1", "block2_sepconv1"), (), "-1-1"),
    ("VGG", ("block1_conv1", "block1_pool"), ("block2_sepconv1",), "caffe"),
    ("MobileNetV2", ("Conv1", "expanded_conv_project"), (), "-1-1"),
    ("MobileNet", ("conv1", "conv_dw_1"), (), "-1-1"),
    ("InceptionResNetV2", ("mixed_5b", "conv_7b"), (), "-1-1"),
    ("InceptionV3", ("mixed0", "mixed10"), (), "-1-1"),
    ("NASNet", ("stem_conv1",), (), "-1-1"),
)
#: layer types by which a model scales its own input (cnndesk's models, EfficientNet, MobileNetV3, ConvNeXt)
SELF_SCALING_LAYERS = ("Rescaling", "Normalization")


def recognise_pixels(layers: list[tuple[str, str]]) -> tuple[str, str]:
    """The pixel mode a model expects, and why, from its layers' ``(name, type name)`` pairs.

    A model with a ``Rescaling`` or ``Normalization`` layer scales itself ("0-255"); a
    keras.applications family is recognised by its layer names (``PIXEL_FAMILIES``) and gets its
    own ``preprocess_input`` mode; anything else is assumed to expect 0-1, as most Keras tutorials do.

    Returns:
        (a key of ``PIXEL_MODES``, a few words saying why, e.g. "recognised as ResNet").
    """
    types = {kind for _, kind in layers}
    scaling = [kind for kind in SELF_SCALING_LAYERS if kind in types]
    if scaling:
        return "0-255", f"the model has its own {scaling[0]} layer"
    names = {name for name, _ in layers}
    for family, needed, excluded, pixels in PIXEL_FAMILIES:
        if names.issuperset(needed) and not names.intersection(excluded):
            return pixels, f"recognised as {family}"
    return "0-1", "the usual Keras convention; nothing in the model says otherwise"


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
    if isinstance(source, np.ndarray):
        arr = source
        if arr.dtype != np.uint8:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        source = Image.fromarray(arr.squeeze(-1) if arr.ndim == 3 and arr.shape[-1] == 1 else arr)
    if isinstance(source, Image.Image):
        return _as_input(_fit(_upright(source), preprocessing), preprocessing)
    return _read_file(source, preprocessing, lambda upright: _as_input(_fit(upright, preprocessing), preprocessing))


def decode_for_viewing(path, preprocessing: Preprocessing,
                       display_side: int = DISPLAY_SIDE) -> tuple[np.ndarray, np.ndarray]:
    """Decode a file once into a picture to show and the model's input.

    The model input is exactly what ``decode_image(path, preprocessing)``
    returns. The picture is the same decoded image, upright (EXIF orientation
    applied), in RGB and shrunk to at most ``display_side`` pixels on its
    longest side, aspect kept. A large JPEG is decoded at the reduced scale
    the model input needs (never below the model's size), and a JPEG prepared
    in grayscale is decoded in grayscale, so its picture is grey as well.

    Returns:
        (picture: uint8 (h, w, 3), model input: uint8 (H, W, C)).

    Raises:
        UserError: with a reason a person understands, as ``decode_image``.
    """
    def both(upright: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        return _display_picture(upright, display_side), _as_input(_fit(upright, preprocessing), preprocessing)

    return _read_file(path, preprocessing, both)


def _read_file(path, preprocessing: Preprocessing, use):
    """Open the image file at ``path``, decode its first frame upright and return ``use(image)``.

    Everything that reads the file (``use`` too) happens while it is open, and no
    file stays open afterwards. Every failure becomes a ``UserError``.
    """
    h, w = preprocessing.image_size
    try:
        # Pillow itself refuses images over twice its limit; between one and two times it only
        # warns. Check the size here instead of turning the warning into an error with
        # warnings.catch_warnings, which is not thread-safe (decoding runs in threads) and
        # left the "error" filter installed for the whole process (docs/tensorflow-notes.md, Pillow).
        with Image.open(str(path)) as img:
            limit = Image.MAX_IMAGE_PIXELS
            if limit and img.size[0] * img.size[1] > limit:
                raise Image.DecompressionBombError(str(path))
            if img.format == "JPEG":
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale (DCT scaling) when the file is much
                # larger than needed: Pillow picks the smallest scale that still leaves at least
                # the requested size, and ``_fit`` then resizes with an area-aware filter.
                # The request is in stored pixels: swap it when EXIF will turn the image by 90°.
                turned = _orientation(img) in (5, 6, 7, 8)
                img.draft("RGB" if preprocessing.color_mode == "rgb" else "L", (h, w) if turned else (w, h))
            img.load()
            return use(_upright(img))
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


def upright_size(path) -> tuple[int, int] | None:
    """The (height, width) an image file shows at, its EXIF orientation applied, from its header alone (no pixels
    are decoded); None when it cannot be opened."""
    try:
        with Image.open(str(path)) as img:
            w, h = img.size
            return (w, h) if _orientation(img) in (5, 6, 7, 8) else (h, w)
    except Exception:  # a damaged or vanished file: it says nothing about the others
        return None


def _upright(img: Image.Image) -> Image.Image:
    """The first frame, turned as its EXIF orientation says (``img`` itself when there is nothing to do)."""
    try:
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
        # exif_transpose copies the whole image even when there is nothing to turn: ask first
        return ImageOps.exif_transpose(img) if _orientation(img) != 1 else img
    except (OSError, ValueError, SyntaxError) as e:
        raise UserError(f"damaged image: {e}") from None


def _fit(img: Image.Image, preprocessing: Preprocessing) -> Image.Image:
    """``img`` in the colour mode and at the size of ``preprocessing``."""
    h, w = preprocessing.image_size
    try:
        out = _to_mode(img, preprocessing.color_mode)
        if out.size != (w, h):
            out = out.resize((w, h), Image.Resampling.BILINEAR)
    except (OSError, ValueError, SyntaxError) as e:
        raise UserError(f"damaged image: {e}") from None
    return out


def _as_input(img: Image.Image, preprocessing: Preprocessing) -> np.ndarray:
    """The model's uint8 array (H, W, C) of a fitted image (its own pixels, detached from any file)."""
    return np.asarray(img, dtype=np.uint8).reshape(preprocessing.input_shape)


def _display_picture(img: Image.Image, side: int) -> np.ndarray:
    """``img`` in RGB (transparency on white), at most ``side`` pixels on its longest side."""
    try:
        rgb = _to_mode(img, "rgb")
        if max(rgb.size) > side:
            rgb = ImageOps.contain(rgb, (side, side), Image.Resampling.BILINEAR)
    except (OSError, ValueError, SyntaxError) as e:
        raise UserError(f"damaged image: {e}") from None
    return np.asarray(rgb, dtype=np.uint8)


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


def decode_or_reason(path: Path, preprocessing: Preprocessing) -> np.ndarray | str:
    try:
        return decode_image(path, preprocessing)
    except UserError as e:
        return str(e)
    except Exception as e:  # a decoder bug must not stop a whole scan
        return f"cannot decode: {type(e).__name__}: {e}"
