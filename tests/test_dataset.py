"""A dataset folder as the user drops it: scanning, decoding, refusing, splitting, feeding ``fit``."""

from __future__ import annotations

import gc
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from cnndesk.core.data.dataset import DatasetConfig, load_dataset
from cnndesk.core.data.pipeline import make_tf_dataset
from cnndesk.core.data.split import split_indices
from cnndesk.core.data.images import decode_for_viewing, decode_image, DISPLAY_SIDE, Preprocessing
from cnndesk.core.data.scanning import count_skipped, describe_skipped, printable, scan_dataset, SkippedFile
from cnndesk.core.errors import DatasetError, UserError

from conftest import make_image, write_dataset

RGB32 = DatasetConfig(Preprocessing((32, 32), "rgb"))


def _reasons(data) -> dict[str, str]:
    return {os.path.basename(s.path): s.reason for s in data.skipped}


# ---------------------------------------------------------------------------
# layout


def test_a_class_folder_tree_shows_its_classes_and_counts(tiny_dataset):
    scan = scan_dataset(tiny_dataset)
    assert scan.class_names == ["centre", "left", "top"]
    assert len(scan.files) == 60
    assert scan.skipped == []

    data = load_dataset(tiny_dataset, RGB32)
    assert data.counts() == {"centre": 20, "left": 20, "top": 20}
    assert data.images.shape == (60, 32, 32, 3) and data.images.dtype == np.uint8
    assert data.imbalance_warning() is None
    # every decoded image is the file it came from
    i = data.paths.index(str(tiny_dataset / "left" / "left_03.png"))
    assert np.array_equal(data.images[i], np.asarray(Image.open(tiny_dataset / "left" / "left_03.png")))
    assert data.class_names[data.labels[i]] == "left"


def test_images_in_nested_subfolders_count_for_their_class(tiny_dataset):
    sub = tiny_dataset / "left" / "more" / "deeper"
    sub.mkdir(parents=True)
    make_image("left", np.random.default_rng(5)).save(sub / "extra.png")
    data = load_dataset(tiny_dataset, RGB32)
    assert data.counts()["left"] == 21


@pytest.mark.parametrize("fmt", ["jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff"])
def test_every_supported_format_is_read(tmp_path, fmt):
    root = write_dataset(tmp_path / "ds", classes=("left", "top"), per_class=3, fmt=fmt)
    data = load_dataset(root, RGB32)
    assert data.counts() == {"left": 3, "top": 3}
    assert data.skipped == []
    # the pixels are the image's: compare one decoded file with what was written
    original = make_image("left", np.random.default_rng(0))
    decoded = decode_image(root / "left" / f"left_00.{fmt}", Preprocessing((32, 32)))
    diff = np.abs(decoded.astype(int) - np.asarray(original, dtype=int)).mean()
    lossless = fmt in ("png", "bmp", "tif", "tiff")
    assert diff == 0 if lossless else diff < 12


def test_an_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    with Image.open(tmp_path / "anim.gif") as im:
        assert im.n_frames == 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        out = decode_image(tmp_path / "anim.gif", Preprocessing((8, 8)))
        gc.collect()
    assert tuple(out[4, 4]) == (255, 0, 0)
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]  # the file was closed


def test_exif_orientation_is_applied(tmp_path):
    # stored 16 wide x 8 high, left half black, right half white, tagged "rotate 90 clockwise"
    arr = np.zeros((8, 16, 3), np.uint8)
    arr[:, 8:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(arr).save(tmp_path / "phone.jpg", exif=exif, quality=95)

    out = decode_image(tmp_path / "phone.jpg", Preprocessing((16, 8)))
    # shown upright: 8 wide x 16 high, the black half now on top
    assert out.shape == (16, 8, 3)
    assert out[:6].mean() < 20
    assert out[-6:].mean() > 235


def test_images_smaller_than_the_image_size_are_noted_upright_at_their_largest(tmp_path):
    for c, sizes in (("a", [(20, 30), (25, 12)]), ("b", [(25, 30), (18, 18)])):
        (tmp_path / c).mkdir()
        for i, (h, w) in enumerate(sizes):
            Image.fromarray(np.full((h, w, 3), 40 * i, np.uint8)).save(tmp_path / c / f"{i}.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 40 wide x 20 high, shown upright 20 wide x 40 high
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(tmp_path / "b" / "phone.jpg", exif=exif)
    data = load_dataset(tmp_path, DatasetConfig(Preprocessing((64, 64)), val_split=0))
    assert data.upscaling_note() == "Images are up to 40×30 px; they are scaled up to 64×64 for training."
    assert load_dataset(tmp_path, DatasetConfig(Preprocessing((40, 30)), val_split=0)).upscaling_note() == ""
    assert load_dataset(tmp_path, DatasetConfig(Preprocessing((32, 32)), val_split=0)).upscaling_note() == ""


@pytest.mark.parametrize("orientation", [1, 6])
def test_a_large_photo_is_decoded_at_reduced_scale_but_never_below_the_model_size(tmp_path, monkeypatch,
                                                                                   orientation):
    from PIL import ImageOps, JpegImagePlugin

    # a camera-sized JPEG stored 800 wide x 400 high, left half black; 6 = "rotate 90 clockwise"
    arr = np.zeros((400, 800, 3), np.uint8)
    arr[:, 400:] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(tmp_path / "photo.jpg", exif=exif, quality=95)
    decoded_at, transposed = [], []
    real_draft, real_transpose = JpegImagePlugin.JpegImageFile.draft, ImageOps.exif_transpose

    def draft(self, mode, size):
        result = real_draft(self, mode, size)
        decoded_at.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", draft)
    monkeypatch.setattr(ImageOps, "exif_transpose", lambda im, **kw: transposed.append(im) or real_transpose(im, **kw))

    # 200 wide x 100 high: an eighth of the turned photo's height, half its width
    out = decode_image(tmp_path / "photo.jpg", Preprocessing((100, 200)))
    assert out.shape == (100, 200, 3)
    (stored_w, stored_h), = decoded_at
    shown_w, shown_h = (stored_h, stored_w) if orientation == 6 else (stored_w, stored_h)
    assert stored_w < 800 and shown_w >= 200 and shown_h >= 100  # smaller than the file, not than the model
    assert len(transposed) == (orientation != 1)  # an upright image is not copied for nothing
    if orientation == 6:  # shown upright: the black half on top
        assert out[:40].mean() < 20 and out[-40:].mean() > 235
    else:
        assert out[:, :80].mean() < 20 and out[:, -80:].mean() > 235


def test_draft_decoding_keeps_the_pixels_of_a_full_decode(tmp_path):
    # a detailed photo-like JPEG: decoding at reduced scale then resizing must stay close to
    # decoding everything and resizing with a high-quality filter
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:600, 0:800]
    arr = np.stack([127 + 100 * np.sin(xx / 7.0), 127 + 100 * np.cos(yy / 11.0), (xx + yy) % 256], -1)
    arr = np.clip(arr + rng.normal(0, 8, arr.shape), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "big.jpg", quality=92)
    out = decode_image(tmp_path / "big.jpg", Preprocessing((96, 128))).astype(float)
    with Image.open(tmp_path / "big.jpg") as im:
        reference = np.asarray(im.convert("RGB").resize((128, 96), Image.Resampling.LANCZOS), dtype=float)
    psnr = 10 * np.log10(255.0 ** 2 / np.mean((out - reference) ** 2))
    assert psnr > 33  # measured 35.1 dB; a full decode + bilinear gives 35.9, a nearest-pixel resize 30.9


def _red_palette_image():
    img = Image.new("P", (8, 8), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.putpixel((0, 0), 1)  # one blue pixel
    return img


@pytest.mark.parametrize("kind", ["palette", "rgba", "16bit", "cmyk-jpeg", "cmyk-tiff", "palette-transparent"])
def test_special_modes_are_converted_to_rgb_and_grayscale(tmp_path, kind):
    if kind == "palette":
        path = tmp_path / "p.png"
        _red_palette_image().save(path)
        rgb, grey = (255, 0, 0), 76  # ITU-R 601 luma of pure red
    elif kind == "palette-transparent":
        path = tmp_path / "pt.gif"
        img = _red_palette_image()
        img.info["transparency"] = 0  # the red index is transparent: composited on white
        img.save(path, transparency=0)
        rgb, grey = (255, 255, 255), 255
    elif kind == "rgba":
        path = tmp_path / "a.png"
        img = Image.new("RGBA", (8, 8), (255, 0, 0, 255))
        img.putpixel((0, 0), (0, 0, 255, 0))  # a fully transparent pixel becomes white
        img.save(path)
        rgb, grey = (255, 0, 0), 76
        assert tuple(decode_image(path, Preprocessing((8, 8)))[0, 0]) == (255, 255, 255)
    elif kind == "16bit":
        path = tmp_path / "deep.png"
        a = np.full((8, 8), 65535, np.uint16)
        a[0, 0] = 0
        Image.fromarray(a).save(path)
        assert Image.open(path).mode.startswith("I")
        rgb, grey = (255, 255, 255), 255
        assert decode_image(path, Preprocessing((8, 8), "grayscale"))[0, 0, 0] == 0
    else:
        path = tmp_path / ("c.jpg" if kind == "cmyk-jpeg" else "c.tif")
        Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(path)  # red in ink
        assert Image.open(path).mode == "CMYK"
        rgb, grey = (255, 0, 0), 76

    tol = 6 if path.suffix == ".jpg" else 1
    out = decode_image(path, Preprocessing((8, 8), "rgb"))
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert np.abs(out[4, 4].astype(int) - rgb).max() <= tol
    g = decode_image(path, Preprocessing((8, 8), "grayscale"))
    assert g.shape == (8, 8, 1)
    assert abs(int(g[4, 4, 0]) - grey) <= tol


@pytest.mark.parametrize("transparent", [False, True])
def test_a_palette_png_decodes_with_and_without_a_transparent_colour(tmp_path, transparent):
    # index 0 red, index 1 blue (one pixel), index 2 half-transparent green when the PNG has a tRNS chunk
    img = _red_palette_image()
    img.putpalette([255, 0, 0, 0, 0, 255, 0, 255, 0] + [0] * 759)
    img.putpixel((7, 7), 2)
    path = tmp_path / "p.png"
    img.save(path, transparency=bytes([0, 255, 128])) if transparent else img.save(path)
    assert Image.open(path).mode == "P"

    out = decode_image(path, Preprocessing((8, 8), "rgb")).astype(int)
    assert tuple(out[0, 0]) == (0, 0, 255)  # opaque in both
    if transparent:
        assert tuple(out[4, 4]) == (255, 255, 255)  # fully transparent red: the white background
        assert np.abs(out[7, 7] - (127, 255, 127)).max() <= 1  # half green, half white
    else:
        assert tuple(out[4, 4]) == (255, 0, 0) and tuple(out[7, 7]) == (0, 255, 0)
    grey = decode_image(path, Preprocessing((8, 8), "grayscale"))
    assert grey[4, 4, 0] == (255 if transparent else 76)


def _turned_photo(path, width=1800, height=1200, orientation=6):
    """A JPEG stored ``width`` x ``height`` whose EXIF says to turn it; left third black, a red right third."""
    arr = np.full((height, width, 3), 128, np.uint8)
    arr[:, : width // 3] = 0
    arr[:, -width // 3:] = (220, 30, 30)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(path, exif=exif, quality=90)
    return path


@pytest.mark.parametrize("color_mode", ["rgb", "grayscale"])
@pytest.mark.parametrize("size", [(64, 64), (48, 80)])
def test_a_viewed_file_is_decoded_once_into_a_picture_and_exactly_the_model_input(tmp_path, color_mode, size):
    path = _turned_photo(tmp_path / "phone.jpg")  # 6: turned 90° clockwise, so shown 1200 wide x 1800 high
    pre = Preprocessing(size, color_mode)
    picture, prepared = decode_for_viewing(path, pre)
    np.testing.assert_array_equal(prepared, decode_image(path, pre))
    assert prepared.shape == pre.input_shape and prepared.dtype == np.uint8
    # the picture: upright (taller than wide, the black third on top), RGB, at most DISPLAY_SIDE, aspect kept
    h, w, c = picture.shape
    assert c == 3 and picture.dtype == np.uint8
    assert max(h, w) <= DISPLAY_SIDE and h > w and abs(h / w - 1.5) < 0.02
    assert picture[: h // 4].mean() < 20 and picture[-h // 8:].mean() > 60


def test_a_small_viewed_file_keeps_its_size_and_colours(tmp_path):
    img = Image.new("RGBA", (30, 20), (0, 0, 255, 255))
    img.putpixel((0, 0), (255, 0, 0, 0))  # transparent: white, as the model sees it
    img.save(tmp_path / "small.png")
    picture, prepared = decode_for_viewing(tmp_path / "small.png", Preprocessing((8, 8), "grayscale"))
    assert picture.shape == (20, 30, 3)
    assert tuple(picture[0, 0]) == (255, 255, 255) and tuple(picture[10, 10]) == (0, 0, 255)
    np.testing.assert_array_equal(prepared, decode_image(tmp_path / "small.png", Preprocessing((8, 8), "grayscale")))


def test_a_viewed_file_that_cannot_be_read_gives_the_reasons_decode_image_gives(tmp_path):
    (tmp_path / "bad.png").write_text("not an image")
    for path in (tmp_path / "bad.png", tmp_path / "missing.jpg"):
        with pytest.raises(UserError) as viewing:
            decode_for_viewing(path, Preprocessing())
        with pytest.raises(UserError) as preparing:
            decode_image(path, Preprocessing())
        assert str(viewing.value) == str(preparing.value)


def test_hidden_files_and_folders_are_ignored(tiny_dataset):
    make_image("left", np.random.default_rng(1)).save(tiny_dataset / "left" / ".secret.png")
    (tiny_dataset / ".git").mkdir()
    make_image("left", np.random.default_rng(1)).save(tiny_dataset / ".git" / "x.png")
    (tiny_dataset / "__MACOSX").mkdir()
    make_image("left", np.random.default_rng(1)).save(tiny_dataset / "__MACOSX" / "y.png")
    (tiny_dataset / "top" / ".thumbnails").mkdir()
    make_image("top", np.random.default_rng(1)).save(tiny_dataset / "top" / ".thumbnails" / "t.png")

    data = load_dataset(tiny_dataset, RGB32)
    assert data.class_names == ["centre", "left", "top"]
    assert data.counts() == {"centre": 20, "left": 20, "top": 20}
    assert not any("secret" in p or ".git" in p or "thumbnails" in p for p in data.paths)


def test_a_folder_link_loop_is_not_followed(tiny_dataset, tmp_path):
    os.symlink(tiny_dataset, tiny_dataset / "left" / "back_to_root")  # loops to the dataset folder
    os.symlink(".", tiny_dataset / "top" / "myself")  # loops to its own folder
    os.symlink(tiny_dataset / "top", tiny_dataset / "centre" / "other_class")  # into another class
    outside = tmp_path / "outside"
    outside.mkdir()
    for i in range(2):
        make_image("left", np.random.default_rng(i)).save(outside / f"o{i}.png")
    os.symlink(outside, tiny_dataset / "left" / "linked")  # a link out of the dataset: followed only on request

    data = load_dataset(tiny_dataset, RGB32)
    # no class picked up another class's images through a link, and nothing was read twice
    assert data.counts() == {"centre": 20, "left": 20, "top": 20}
    assert len(set(data.paths)) == len(data.paths)
    reasons = _reasons(data)
    for name in ("back_to_root", "myself", "other_class"):
        assert "not followed" in reasons[name]
    assert reasons["linked"].startswith("link outside the dataset folder")

    data = load_dataset(tiny_dataset, RGB32, follow_outside_links=True)
    assert data.counts() == {"centre": 20, "left": 22, "top": 20}
    assert len(set(data.paths)) == len(data.paths)


def test_a_decompression_bomb_is_refused_with_a_message(tiny_dataset, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # 32x32 = 1024 pixels stays allowed
    Image.new("RGB", (50, 50)).save(tiny_dataset / "left" / "warn_range.png")  # 1-2x the limit
    Image.new("RGB", (70, 70)).save(tiny_dataset / "left" / "error_range.png")  # over 2x
    with pytest.raises(UserError, match="decompression-bomb"), warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        decode_image(tiny_dataset / "left" / "warn_range.png", Preprocessing((32, 32)))

    filters_before = list(warnings.filters)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        filters_inside = list(warnings.filters)
        data = load_dataset(tiny_dataset, RGB32, workers=3)
        assert warnings.filters == filters_inside  # decoding threads leave the process's warning filters alone
    assert warnings.filters == filters_before
    reasons = _reasons(data)
    assert "decompression-bomb" in reasons["warn_range.png"]
    assert "decompression-bomb" in reasons["error_range.png"]
    assert data.counts() == {"centre": 20, "left": 20, "top": 20}


def test_unreadable_files_are_skipped_and_listed_with_a_reason(tiny_dataset):
    (tiny_dataset / "left" / "notes.png").write_text("this is not a picture")
    good = (tiny_dataset / "top" / "top_00.png").read_bytes()
    (tiny_dataset / "top" / "cut.png").write_bytes(good[: len(good) // 2])
    (tiny_dataset / "top" / "readme.txt").write_text("hello")

    data = load_dataset(tiny_dataset, RGB32)
    assert data.counts() == {"centre": 20, "left": 20, "top": 20}
    skipped = {s.path: s.reason for s in data.skipped}
    assert set(skipped) == {str(tiny_dataset / "left" / "notes.png"), str(tiny_dataset / "top" / "cut.png"),
                            str(tiny_dataset / "top" / "readme.txt")}
    assert "not a readable image" in skipped[str(tiny_dataset / "left" / "notes.png")]
    assert "truncated" in skipped[str(tiny_dataset / "top" / "cut.png")]
    assert "not an image file type" in skipped[str(tiny_dataset / "top" / "readme.txt")]


def test_decoding_a_missing_file_says_so(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        decode_image(tmp_path / "nope.png", Preprocessing((8, 8)))


# ---------------------------------------------------------------------------
# refusals


def test_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nowhere")


def test_a_file_instead_of_a_folder_is_refused(tmp_path):
    f = tmp_path / "photo.png"
    Image.new("RGB", (4, 4)).save(f)
    with pytest.raises(DatasetError, match="is a file, not a folder"):
        load_dataset(f)


def test_a_folder_without_class_subfolders_is_refused_with_the_layout(tmp_path):
    for i in range(3):
        Image.new("RGB", (4, 4)).save(tmp_path / f"{i}.png")
    with pytest.raises(DatasetError) as e:
        load_dataset(tmp_path)
    assert "no class subfolders" in str(e.value)
    assert "put each class's images in a subfolder" in str(e.value)


def test_a_single_class_is_refused(tmp_path):
    root = write_dataset(tmp_path / "ds", classes=("left",), per_class=4)
    with pytest.raises(DatasetError, match="at least 2 are needed"):
        load_dataset(root, RGB32)


def test_two_classes_with_one_unusable_is_refused(tmp_path):
    root = write_dataset(tmp_path / "ds", classes=("left",), per_class=4)
    (root / "broken").mkdir()
    (root / "broken" / "x.png").write_text("not an image")
    with pytest.raises(DatasetError, match="at least 2 are needed"):
        load_dataset(root, RGB32)


def test_a_class_with_no_usable_image_is_named(tiny_dataset):
    (tiny_dataset / "empty").mkdir()
    (tiny_dataset / "empty" / "x.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(DatasetError) as e:
        load_dataset(tiny_dataset, RGB32)
    assert "'empty'" in str(e.value) and "no usable image" in str(e.value)


# ---------------------------------------------------------------------------
# counts, split


def test_an_imbalanced_dataset_gets_a_warning_naming_the_small_class(tmp_path):
    root = write_dataset(tmp_path / "ds", classes=("left", "top"), per_class=20)
    write_dataset(root, classes=("centre",), per_class=6, seed=3)
    data = load_dataset(root, RGB32)
    assert data.counts() == {"centre": 6, "left": 20, "top": 20}
    warning = data.imbalance_warning()
    assert warning is not None and "centre (6)" in warning and "class weights" in warning
    assert "left" not in warning
    w = data.class_weight()
    assert w[0] > w[1] and w[1] == pytest.approx(w[2])


def test_the_split_is_stratified_and_deterministic(tiny_dataset):
    a = load_dataset(tiny_dataset, DatasetConfig(Preprocessing((32, 32)), val_split=0.2, seed=7))
    b = load_dataset(tiny_dataset, DatasetConfig(Preprocessing((32, 32)), val_split=0.2, seed=7))
    c = load_dataset(tiny_dataset, DatasetConfig(Preprocessing((32, 32)), val_split=0.2, seed=8))
    assert np.array_equal(a.train_index, b.train_index) and np.array_equal(a.val_index, b.val_index)
    assert not np.array_equal(a.val_index, c.val_index)
    assert sorted(np.concatenate([a.train_index, a.val_index]).tolist()) == list(range(60))
    # each class keeps 20 % for validation
    assert np.bincount(a.labels[a.val_index], minlength=3).tolist() == [4, 4, 4]


def test_a_tiny_class_still_gets_a_validation_and_a_training_image():
    labels = np.array([0] * 2 + [1] * 30)
    train, val = split_indices(labels, 0.1, seed=1)
    assert set(labels[val]) == {0, 1} and set(labels[train]) == {0, 1}
    with pytest.raises(UserError, match="validation split"):
        split_indices(labels, 1.0, seed=1)


# ---------------------------------------------------------------------------
# tf.data


def test_the_pipeline_gives_float_pixels_in_0_255_and_one_hot_labels(tiny_dataset):
    data = load_dataset(tiny_dataset, RGB32)
    x, y = data.subset(data.val_index)
    batches = list(make_tf_dataset(x, y, data.num_classes, 5, training=False))
    assert [len(b[0]) for b in batches] == [5, 5, 2]
    xb, yb = batches[0]
    assert xb.dtype.name == "float32" and tuple(xb.shape) == (5, 32, 32, 3)
    assert float(xb.numpy().min()) >= 0 and float(xb.numpy().max()) > 200  # not scaled to 0-1
    assert np.array_equal(xb.numpy(), x[:5].astype(np.float32))  # validation is not shuffled or changed
    assert tuple(yb.shape) == (5, 3)
    assert np.array_equal(yb.numpy(), np.eye(3)[y[:5]])


@pytest.mark.slow
def test_augmentation_changes_training_batches_but_stays_out_of_the_model(tiny_dataset):
    from cnndesk.core.model.architecture import build_model, preset

    data = load_dataset(tiny_dataset, RGB32)
    x, y = data.subset(data.train_index)
    originals = {img.tobytes() for img in x.astype(np.float32)}

    def images(augment):
        ds = make_tf_dataset(x, y, 3, 16, training=True, seed=3, augment=augment)
        return np.concatenate([b[0].numpy() for b in ds])

    plain = images(())
    assert len(plain) == len(x)
    assert all(img.tobytes() in originals for img in plain)  # shuffled, untouched
    augmented = images(("flip", "rotate", "zoom", "contrast", "brightness"))
    changed = sum(img.tobytes() not in originals for img in augmented)
    assert changed > len(x) // 2
    assert augmented.min() >= 0 and augmented.max() <= 255

    model = build_model(preset("seed"), (32, 32, 3), 3)
    assert not any(type(layer).__name__.startswith("Random") for layer in model.layers)
    with pytest.raises(UserError, match="Unknown augmentation"):
        make_tf_dataset(x, y, 3, 16, training=True, augment=("sparkle",))


def test_the_pipeline_reads_the_split_from_the_one_cache_by_row_number(tiny_dataset):
    data = load_dataset(tiny_dataset, RGB32)
    n = len(data.train_index)  # 48 of 60
    label_of = {data.images[i].tobytes(): data.labels[i] for i in data.train_index}

    def passes(seed, count):
        ds = make_tf_dataset(data.images, data.labels, 3, 8, training=True, seed=seed, repeat=True,
                             index=data.train_index)
        it = iter(ds)
        out = []
        for _ in range(count):
            batches = [next(it) for _ in range(n // 8)]
            out.append((np.concatenate([b[0].numpy() for b in batches]).astype(np.uint8),
                        np.concatenate([b[1].numpy() for b in batches])))
        return ds, out

    ds, (first, second) = passes(5, 2)
    x_spec, y_spec = ds.element_spec  # static shapes for Keras and for tf.distribute's rebatching
    assert tuple(x_spec.shape) == (None, 32, 32, 3) and x_spec.dtype.name == "float32"
    assert tuple(y_spec.shape) == (None, 3) and y_spec.dtype.name == "float32"
    for x, y in (first, second):  # every training image once per pass, with its own label
        assert sorted(img.tobytes() for img in x) == sorted(label_of)
        assert [label_of[img.tobytes()] for img in x] == list(y.argmax(1))
    assert not np.array_equal(first[0], second[0])  # reshuffled every pass
    _, (again,) = passes(5, 1)
    assert np.array_equal(again[0], first[0])  # the seed fixes the order
    _, (other,) = passes(6, 1)
    assert not np.array_equal(other[0], first[0])

    val = list(make_tf_dataset(data.images, data.labels, 3, 5, training=False, index=data.val_index))
    assert [len(b[0]) for b in val] == [5, 5, 2]
    assert np.array_equal(np.concatenate([b[0].numpy() for b in val]), data.images[data.val_index].astype(np.float32))
    assert np.array_equal(np.concatenate([b[1].numpy() for b in val]), np.eye(3)[data.labels[data.val_index]])
    with pytest.raises(ValueError, match="outside"):
        make_tf_dataset(data.images, data.labels, 3, 5, training=False, index=np.array([0, len(data.labels)]))


# ---------------------------------------------------------------------------
# links, skipped files, unreadable datasets, odd names (issue 12)


@pytest.mark.slow
def test_a_class_folder_linking_out_of_the_dataset_is_not_followed_and_said(tiny_dataset, tmp_path):
    elsewhere = tmp_path / "usr-share"  # like a link to /usr/share: thousands of unrelated files
    for i in range(3000):
        (elsewhere / f"d{i % 30}").mkdir(parents=True, exist_ok=True)
        (elsewhere / f"d{i % 30}" / f"f{i}.txt").write_text("x")
    for i in range(2):
        make_image("left", np.random.default_rng(i)).save(elsewhere / f"icon{i}.png")
    os.symlink(elsewhere, tiny_dataset / "share")

    data = load_dataset(tiny_dataset, RGB32)
    assert data.class_names == ["centre", "left", "top"]
    assert [s.path for s in data.skipped] == [str(tiny_dataset / "share")]  # one entry, nothing under it listed
    assert data.skipped[0].kind == "link outside the dataset folder"
    [note] = [w for w in data.warnings() if "not followed" in w]
    assert str(tiny_dataset / "share") in note and "--follow-outside-links" in note

    followed = load_dataset(tiny_dataset, RGB32, follow_outside_links=True)
    assert "share" in followed.class_names and followed.counts()["share"] == 2


def test_links_inside_the_dataset_folder_are_followed(tiny_dataset):
    store = tiny_dataset / ".store" / "stars"  # hidden, so not a class itself
    store.mkdir(parents=True)
    for i in range(12):
        make_image("centre", np.random.default_rng(i)).save(store / f"s{i}.png")
    os.symlink(store, tiny_dataset / "stars")
    os.symlink(tiny_dataset / "top" / "top_00.png", tiny_dataset / "left" / "alias.png")
    data = load_dataset(tiny_dataset, RGB32)
    assert data.counts() == {"centre": 20, "left": 21, "stars": 12, "top": 20}
    assert not [s for s in data.skipped if "link" in s.reason]


def test_a_file_linking_out_of_the_dataset_is_not_read(tiny_dataset, tmp_path):
    secret = tmp_path / "private.png"
    make_image("left", np.random.default_rng(0)).save(secret)
    os.symlink(secret, tiny_dataset / "left" / "innocent.png")
    data = load_dataset(tiny_dataset, RGB32)
    assert data.counts()["left"] == 20
    assert _reasons(data)["innocent.png"].startswith("link outside the dataset folder (a file link to")


def test_tens_of_thousands_of_skipped_files_make_a_few_lines_counted_by_reason():
    skipped = [SkippedFile(f"/d/c/{i}.txt", "not an image file type cnndesk reads (.txt)") for i in range(47_000)]
    skipped += [SkippedFile(f"/d/c/{i}.png", f"damaged image: broken data stream at {i}") for i in range(315)]
    assert count_skipped(skipped) == {"not an image file type cnndesk reads": 47_000, "damaged image": 315}
    lines = describe_skipped(skipped)
    assert len(lines) == 7
    assert lines[0] == "skipped 47,315 files: 47,000 not an image file type cnndesk reads, 315 damaged image"
    assert lines[1] == "  /d/c/0.txt: not an image file type cnndesk reads (.txt)"
    assert lines[-1].startswith("  … and 47,310 more (the full list: --json")


def _break(files):
    for f in files:
        f.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)  # a PNG signature and nothing readable after it


@pytest.mark.slow
def test_a_dataset_that_lost_most_of_its_images_is_refused_with_the_numbers(tmp_path):
    root = write_dataset(tmp_path / "ds", classes=("left", "top"), per_class=400, size=8)
    _break(sorted(root.rglob("*.png"))[2:400] + sorted(root.rglob("*.png"))[402:])  # 796 of 800
    with pytest.raises(DatasetError) as e:
        load_dataset(root, DatasetConfig(Preprocessing((8, 8))))
    msg = str(e.value)
    assert "796 of the 800 image files" in msg and "(99.5%)" in msg and "only 4 are left" in msg


def test_a_class_that_lost_most_of_its_images_is_refused_by_name(tmp_path):
    root = write_dataset(tmp_path / "ds", classes=("left", "top", "centre"), per_class=20)
    _break(sorted((root / "top").iterdir())[:15])
    with pytest.raises(DatasetError, match=r"15 of the 20 image files of the class top \(75.0%\)"):
        load_dataset(root, RGB32)


def test_some_unreadable_images_give_a_warning_with_the_numbers(tiny_dataset):
    _break(sorted((tiny_dataset / "top").iterdir())[:8])  # 8 of 60, 13 %
    data = load_dataset(tiny_dataset, RGB32)
    assert data.counts()["top"] == 12
    [w] = [w for w in data.warnings() if "could not be read" in w]
    assert w.startswith("8 of the 60 image files (13.3%) could not be read (the first: ")


def test_a_class_too_small_to_split_is_refused_and_small_classes_are_warned_about(tmp_path):
    root = write_dataset(tmp_path / "ds", classes=("left", "top"), per_class=20)
    write_dataset(root, classes=("centre",), per_class=1)
    with pytest.raises(DatasetError, match=r"The class centre has only 1 usable image: too few to split"):
        load_dataset(root, RGB32)
    data = load_dataset(root, DatasetConfig(Preprocessing((32, 32)), val_split=0.0))  # no split: allowed
    assert any(w.startswith("Few images: centre (1) has fewer than 10") for w in data.warnings())


def test_odd_class_folder_names_are_kept_and_shown_escaped(tmp_path):
    root = write_dataset(tmp_path / "ds", classes=("left", "top"), per_class=4)
    os.rename(root / "left", os.fsencode(root) + b"/caf\xe9")  # not UTF-8
    os.rename(root / "top", root / "two\nlines")
    data = load_dataset(root, RGB32)
    assert data.class_names == ["caf\udce9", "two\nlines"]  # the names the file system has
    assert [printable(n) for n in data.class_names] == ["caf\\xe9", "two\\nlines"]
    assert printable("chats été") == "chats été"
    text = "\n".join(describe_skipped([SkippedFile(str(root / "two\nlines" / "x.txt"), "r")]))
    assert text.count("\n") == 1 and "two\\nlines" in text


def test_a_project_reopens_with_class_names_holding_newlines_and_undecodable_bytes(tmp_path):
    from cnndesk.core.project.store import open_project, Project, PROJECT_FILE, save_project

    names = ["caf\udce9", "two\nlines", "plain", "tab\there"]
    folder = save_project(tmp_path / "proj", Project(dataset_path=os.fsdecode(b"/data/ph\xf6tos"), class_names=names))
    (tmp_path / "proj" / PROJECT_FILE).read_bytes().decode("utf-8")  # stored as valid UTF-8 (JSON escapes)
    project, _ = open_project(folder, load_model=False)
    assert project.class_names == names
    assert os.fsencode(project.dataset_path) == b"/data/ph\xf6tos"
