"""Finding what is wrong with the data: duplicates, split leaks, likely mislabelled images, and fixing it.

The dataset is generated with known faults (``planted_data``): exact copies, resized and
re-encoded JPEG copies, copies filed under another class, and files moved into the wrong
class. The GUI tests click, type and answer the questions as a person would.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QInputDialog, QLabel, QMessageBox

from cnndesk.core.data.dataset import DatasetConfig, load_dataset, resplit
from cnndesk.core.data.split import split_indices
from cnndesk.core.project.schema import Project
from cnndesk.core.data.copies import (
    confirm_pairs, DEFAULT_DISTANCE, find_duplicates, hamming, MAX_DISTANCE, perceptual_hashes, picture_thumbnails,
    similar_pairs,
)
from cnndesk.core.quality.label_scores import KFOLD, rank_label_doubts, stratified_folds, VALIDATION
from cnndesk.core.data.fixes import Change, ChangeLog, MOVE, move_to_class
from cnndesk.core.errors import UserError

from lookalikes import EDITS, edited_copy, stroke_digits, texture_tiles
from planted_data import duplicate_scores, found_pairs, write_planted_dataset
from test_app import set_epochs
from test_cli import run


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return write_planted_dataset(tmp_path_factory.mktemp("planted") / "shapes", per_class=20)


@pytest.fixture
def planted_copy(tmp_path):
    """A planted dataset of its own, for tests that move files."""
    return write_planted_dataset(tmp_path / "shapes", per_class=12, swapped=2)


def _groups_straddle(groups, train, val) -> list:
    t, v = set(train.tolist()), set(val.tolist())
    return [g for g in groups if {m for m in g.members if m in t} and {m for m in g.members if m in v}]


# ---------------------------------------------------------------------------
# the finder

def test_every_planted_copy_is_found_and_few_others(planted):
    data = load_dataset(planted.root)
    report = find_duplicates(data.images, data.labels, data.pairs, DEFAULT_DISTANCE, data.val_index)
    precision, recall = duplicate_scores(report, data.paths, planted)
    assert recall == 1.0  # every exact, near and cross-class copy
    assert precision >= 0.9  # the README states the figure of the benchmark's larger set
    found = found_pairs(report, data.paths)
    kinds = {frozenset((data.paths[g.members[0]], data.paths[g.members[-1]])): g for g in report.groups}
    for pair in planted.exact:
        assert kinds[frozenset(pair)].exact
    for pair in planted.cross_class:
        assert frozenset(pair) in found and kinds[frozenset(pair)].cross_class
    for pair in planted.near:
        assert not kinds[frozenset(pair)].exact  # re-encoded: the same picture, not the same pixels
    assert report.counts()["cross_class"] == len(planted.cross_class)


def test_a_resized_jpeg_copy_hashes_close_and_different_images_far(planted):
    data = load_dataset(planted.root)
    index = {p: i for i, p in enumerate(data.paths)}
    near = [int(hamming(data.hashes[index[a]], data.hashes[index[b]])) for a, b in planted.near]
    assert max(near) <= DEFAULT_DISTANCE
    d = hamming(data.hashes[:, None], data.hashes[None, :])
    assert np.median(d[np.triu_indices(len(d), 1)]) >= 20  # unrelated pictures differ in about half the bits


def test_hashes_are_the_same_for_any_batch_size():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (37, 24, 20, 3), dtype=np.uint8)  # smaller than the thumbnail: pixels repeat
    assert np.array_equal(perceptual_hashes(images, chunk_values=5 * 24 * 20 * 3), perceptual_hashes(images))


def test_the_hash_is_the_dct_of_a_32px_grey_thumbnail():
    """The two matrix products give what the docstring says: block means, a 2-D DCT, 64 bits against the median."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    thumb = image.astype(float).mean(axis=2).reshape(32, 2, 32, 3).mean(axis=(1, 3))
    x = np.arange(32)
    basis = np.cos(np.pi * (2 * x[None, :] + 1) * x[:, None] / 64)
    spectrum = basis @ thumb @ basis.T
    order = sorted(((a, b) for a in range(32) for b in range(32) if (a, b) != (0, 0)), key=lambda p: (sum(p), p[0]))
    low = np.array([spectrum[a, b] for a, b in order[:64]])
    expected = int("".join("1" if c > np.median(low) else "0" for c in low), 2)
    assert int(perceptual_hashes(image[None])[0]) == expected


@pytest.fixture(scope="module")
def edited_tiles(tmp_path_factory):
    """Photo-like tiles (JPEG, one class per picture) and 12 copies with the 6 edits, 3 of them under another class."""
    root = tmp_path_factory.mktemp("tiles") / "tiles"
    tiles, labels = texture_tiles(pictures=4, tiles_per_side=3, seed=2)
    paths = []
    for n, (tile, label) in enumerate(zip(tiles, labels)):
        (root / f"p{label}").mkdir(parents=True, exist_ok=True)
        paths.append(root / f"p{label}" / f"{n:02d}.jpg")
        Image.fromarray(tile).save(paths[-1], quality=90)
    planted = set()
    for k in range(2 * len(EDITS)):
        n = 3 * k % len(tiles)
        with Image.open(paths[n]) as decoded:
            copy = edited_copy(np.asarray(decoded.convert("RGB")), EDITS[k % len(EDITS)])
        label = labels[n] if k % 4 else (labels[n] + 1) % 4  # every 4th under another class
        target = root / f"p{label}" / f"{n:02d}_{EDITS[k % len(EDITS)]}.{'jpg' if k % 6 == 0 else 'png'}"
        copy.save(target, **({"quality": 55} if target.suffix == ".jpg" else {}))
        planted.add(frozenset((str(paths[n]), str(target))))
    return root, planted


def test_copies_of_photo_like_tiles_are_found_whatever_the_edit_and_neighbouring_tiles_are_not(edited_tiles):
    """Re-saved at JPEG quality 55, resized, brightened by 12 %, cropped by 3 %, blurred or re-saved as PNG: still
    the same picture; the neighbouring tiles of one picture look alike but are not copies."""
    root, planted = edited_tiles
    data = load_dataset(root)
    report = find_duplicates(data.images, data.labels, data.pairs, DEFAULT_DISTANCE, data.val_index)
    found = found_pairs(report, data.paths)
    assert planted - found == set(), [sorted(Path(p).name for p in pair) for pair in planted - found]
    assert found - planted == set()
    assert report.counts()["cross_class"] == 3


def test_handwritten_like_digits_are_look_alikes_not_copies(tmp_path):
    """Ones and sevens drawn anew with a jittered hand look alike (their hashes are close) but none is a copy."""
    images, labels = stroke_digits(150, seed=4, digits=(1, 7))
    for c in (1, 7):
        (tmp_path / str(c)).mkdir()
    for n, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image).save(tmp_path / str(label) / f"{n:03d}.png")
    data = load_dataset(tmp_path)
    assert len(data.pairs) == 0
    report = find_duplicates(data.images, data.labels, data.pairs, DEFAULT_DISTANCE)
    assert report.groups == []
    candidates = similar_pairs(data.hashes)
    assert len(candidates) > 100, "many of them hash alike, so the test means something"


def test_a_chain_of_copies_is_no_group_when_its_ends_are_not_copies():
    """a~b and b~c are copies, a and c are not: no group holds all three, and no image is in two groups."""
    images = np.zeros((6, 8, 8, 3), np.uint8)
    labels = np.array([0, 0, 0, 1, 1, 1])
    pairs = np.array([[0, 1, 2], [1, 2, 2], [3, 4, 0], [4, 5, 0], [3, 5, 2]], np.int32)  # 3, 4, 5: all copies
    groups = find_duplicates(images, labels, pairs, DEFAULT_DISTANCE).groups
    members = sorted(sorted(g.members) for g in groups)
    assert [3, 4, 5] in members
    assert [0, 1, 2] not in members and any(len(set(m) & {0, 1, 2}) == 2 for m in members)
    everyone = [m for g in groups for m in g.members]
    assert len(everyone) == len(set(everyone))
    for g in groups:  # every member is a confirmed copy of the group's first image
        linked = {frozenset(p) for p in pairs[:, :2].tolist()}
        assert all(frozenset((g.members[0], m)) in linked for m in g.members[1:])


# ---------------------------------------------------------------------------
# the split

@pytest.mark.parametrize("val_split,seed", [(0.2, 1337), (0.3, 1), (0.5, 7)])
def test_the_split_keeps_every_group_on_one_side(planted, val_split, seed):
    data = load_dataset(planted.root, DatasetConfig(val_split=val_split, seed=seed))
    groups = find_duplicates(data.images, data.labels, data.pairs, DEFAULT_DISTANCE).groups
    plain_train, plain_val = split_indices(data.labels, val_split, seed)
    assert _groups_straddle(groups, plain_train, plain_val), "a plain split leaks here, so the test means something"
    assert not _groups_straddle(groups, data.train_index, data.val_index)
    assert sorted(np.concatenate([data.train_index, data.val_index]).tolist()) == list(range(len(data.labels)))
    assert "kept on one side" in data.split_note


@pytest.mark.parametrize("val_split", [0.2, 0.3])
def test_keeping_groups_together_keeps_every_class_share_within_2_points(val_split):
    """Groups made so that a plain split puts one copy in validation and two in training: keeping them together
    must not take a class's validation images away."""
    from cnndesk.core.data.copies import DuplicateGroup
    from cnndesk.core.data.split import leak_free_split

    labels = np.repeat([0, 1, 2], [300, 200, 100])
    train, val = split_indices(labels, val_split, 1337)
    groups = []
    spare = {c: list(train[labels[train] == c]) for c in range(3)}
    for v in val[labels[val] == 1]:  # every validation image of class 1 gets two training copies
        groups.append(DuplicateGroup((int(v), int(spare[1].pop()), int(spare[1].pop())), False, False, False, 2))
    split = leak_free_split(labels, groups, val_split, 1337)
    for c in range(3):
        share = np.isin(np.flatnonzero(labels == c), split.val).mean()
        assert abs(share - val_split) <= 0.02, (c, share)
    assert not _groups_straddle(groups, split.train, split.val)
    assert sorted(np.concatenate([split.train, split.val]).tolist()) == list(range(len(labels)))


def test_the_split_note_says_when_a_class_cannot_keep_its_share():
    """A class made of one group of copies cannot give validation a share of it: the note says so."""
    from cnndesk.core.data.copies import DuplicateGroup
    from cnndesk.core.data.split import leak_free_split

    labels = np.repeat([0, 1], [100, 10])
    groups = [DuplicateGroup(tuple(range(100, 110)), False, False, False, 0)]
    split = leak_free_split(labels, groups, 0.2, 1337)
    assert not _groups_straddle(groups, split.train, split.val)
    assert "b: 0 % in validation" in split.summary(["a", "b"])
    assert abs(np.isin(np.flatnonzero(labels == 0), split.val).mean() - 0.2) <= 0.02


def test_excluded_images_are_in_neither_side(planted):
    data = load_dataset(planted.root)
    gone = [3, 17, 40]
    again = resplit(data, DatasetConfig(), gone)
    assert not set(gone) & set(again.train_index.tolist()) | set(again.val_index.tolist()) & set(gone)
    assert len(again.train_index) + len(again.val_index) == len(data.labels) - 3
    assert "3 image(s) excluded" in again.split_note


def test_without_duplicates_the_split_is_the_plain_one(tiny_dataset):
    data = load_dataset(tiny_dataset, DatasetConfig(duplicate_distance=0))
    train, val = split_indices(data.labels, 0.2, 1337)
    assert np.array_equal(data.train_index, train) and np.array_equal(data.val_index, val)


# ---------------------------------------------------------------------------
# label doubts and fixes in the core

def test_label_doubts_put_the_least_probable_label_first():
    labels = np.array([0, 0, 1, 1, 2])
    probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.05, 0.9, 0.05]])
    doubts = rank_label_doubts(probs, np.arange(5), labels, [VALIDATION, KFOLD, VALIDATION, KFOLD, VALIDATION])
    assert [d.row for d in doubts] == [4, 1, 3]  # p(label) 0.05, 0.2, 0.3; rows predicted right are left out
    assert (doubts[0].predicted, doubts[0].confidence, doubts[0].scored_by) == (1, 0.9, VALIDATION)


def test_folds_deal_every_training_row_once_and_spread_classes():
    labels = np.repeat(np.arange(3), 10)
    rows = np.arange(2, 30)
    folds = stratified_folds(rows, labels, 3, seed=1)
    assert sorted(np.concatenate(folds).tolist()) == rows.tolist()
    for f in folds:
        assert set(np.bincount(labels[f], minlength=3)) <= {2, 3, 4}


def test_a_move_never_overwrites_and_undo_puts_the_file_back(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    src = tmp_path / "a" / "x.png"
    src.write_bytes(b"one")
    (tmp_path / "b" / "x.png").write_bytes(b"two")
    moved = move_to_class(src, tmp_path, "b")
    assert moved == tmp_path / "b" / "x-1.png" and moved.read_bytes() == b"one"
    assert (tmp_path / "b" / "x.png").read_bytes() == b"two"
    log = ChangeLog()
    change = Change(MOVE, str(src), str(moved), "a", "b")
    log.add(change)
    assert log.undo(change, {"other"}) == {"other"}
    assert src.read_bytes() == b"one" and not moved.exists() and not log.changes
    with pytest.raises(UserError, match="no longer there"):
        move_to_class(tmp_path / "a" / "gone.png", tmp_path, "b")


def test_exclusions_are_kept_in_the_project():
    p = Project(excluded_files=["/d/a/1.png", "/d/b/2.png"])
    again = Project.from_json(json.loads(json.dumps(p.to_json())))
    assert again.excluded_files == ["/d/a/1.png", "/d/b/2.png"]
    older = p.to_json()
    del older["excluded_files"], older["dataset"]["duplicate_distance"]
    opened = Project.from_json(older)
    assert opened.excluded_files == [] and opened.dataset.duplicate_distance == DEFAULT_DISTANCE


# ---------------------------------------------------------------------------
# the CLI

def test_check_prints_counts_and_groups(planted):
    code, out, err = run(["check", planted.root])
    assert code == 0
    assert "12 duplicate group(s)" in out and "3 across classes" in out
    assert "kept on one side" in out
    first_cross = Path(planted.cross_class[0][1])
    assert f"{first_cross.parent.name}/{first_cross.name}" in out


def test_check_json_gives_the_groups(planted):
    code, out, _ = run(["check", planted.root, "--json", "--distance", "0"])
    assert code == 0
    report = json.loads(out)
    assert report["counts"]["exact"] == 6 and report["counts"]["leaks"] == 0  # exact and cross-class copies
    assert report["leaks_without_grouping"] >= 0
    groups = {frozenset(i["path"] for i in g["images"]) for g in report["groups"]}
    assert {frozenset(p) for p in planted.exact + planted.cross_class} <= groups
    code, _, err = run(["check", planted.root, "--distance", "99"])
    assert code == 2 and "distance" in err


# ---------------------------------------------------------------------------
# the app

def _open(make_window, qtbot, folder, **kwargs):
    w = make_window(**kwargs)
    w.dataset_panel.load_folder(str(folder))
    qtbot.waitUntil(lambda: w.state.data is not None and w.state.data.root == Path(folder),
                    timeout=30000)
    return w


def _show_duplicates(qtbot, panel):
    """Click the dataset panel's Duplicates tab."""
    bar = panel.pictures.tabBar()
    qtbot.mouseClick(bar, Qt.LeftButton, pos=bar.tabRect(1).center())
    assert panel.pictures.currentWidget() is panel.duplicates
    return panel.duplicates


def _member_items(tree):
    return [tree.topLevelItem(g).child(c) for g in range(tree.topLevelItemCount())
            for c in range(tree.topLevelItem(g).childCount())]


def _click_item(qtbot, tree, item, modifier=Qt.NoModifier):
    tree.scrollToItem(item)
    qtbot.mouseClick(tree.viewport(), Qt.LeftButton, modifier, tree.visualItemRect(item).center())


def test_a_duplicate_excluded_in_the_panel_leaves_the_split_and_undo_brings_it_back(make_window, qtbot, planted):
    w = _open(make_window, qtbot, planted.root, start_engine=False)
    view = _show_duplicates(qtbot, w.dataset_panel)
    assert w.dataset_panel.pictures.tabText(1) == "Duplicates (12)"
    assert view.tree.topLevelItemCount() == 12
    assert "3 across classes" in view.summary.text()
    assert "kept on one side" in w.dataset_panel.split_note.text()
    copy = planted.cross_class[0][1]
    item = next(i for i in _member_items(view.tree) if i.data(0, Qt.UserRole) == copy)
    _click_item(qtbot, view.tree, item)
    assert view.exclude_button.isEnabled()
    qtbot.mouseClick(view.exclude_button, Qt.LeftButton)

    data = w.state.data
    row = data.paths.index(copy)
    assert copy in w.state.excluded and w.state.modified
    assert row not in data.train_index and row not in data.val_index
    assert view.tree.topLevelItemCount() == 11  # its group has one image left: no longer a group
    assert [view.changes.list.item(i).text() for i in range(view.changes.list.count())] == \
        [f"Excluded {Path(copy).name} ({Path(copy).parent.name})"]
    assert w.state.current_project().excluded_files == [copy]
    assert Path(copy).is_file()  # nothing deleted

    qtbot.mouseClick(view.changes.undo_button, Qt.LeftButton)
    assert not w.state.excluded and view.changes.list.count() == 0
    assert row in set(w.state.data.train_index.tolist()) | set(w.state.data.val_index.tolist())
    assert view.tree.topLevelItemCount() == 12


def test_an_exclusion_survives_saving_and_reopening_the_project_on_the_dataset_tab(make_window, qtbot, planted,
                                                                                     tmp_path, monkeypatch):
    from test_app import save_as

    w = _open(make_window, qtbot, planted.root)
    qtbot.waitUntil(lambda: w.engine.is_ready, timeout=60000)
    view = _show_duplicates(qtbot, w.dataset_panel)
    copy = planted.cross_class[0][1]
    _click_item(qtbot, view.tree, next(i for i in _member_items(view.tree) if i.data(0, Qt.UserRole) == copy))
    qtbot.mouseClick(view.exclude_button, Qt.LeftButton)
    totals = w.dataset_panel.totals.text()
    assert totals.endswith(", 1 excluded")
    folder = tmp_path / "project"
    folder.mkdir()
    save_as(w, qtbot, monkeypatch, folder)

    w2 = make_window()
    qtbot.waitUntil(lambda: w2.engine.is_ready and w2.state.data is not None, timeout=60000)
    w2.open_project(str(folder), confirm=False)
    qtbot.waitUntil(lambda: w2.state.project_path == str(folder) and w2.state.data is not None
                    and w2.state.data.root == Path(planted.root), timeout=30000)
    panel = w2.dataset_panel
    assert w2.state.excluded == {copy} and panel.totals.text() == totals
    row = w2.state.data.paths.index(copy)
    assert row not in w2.state.data.train_index and row not in w2.state.data.val_index
    cells = [panel.class_table.item(r, 1).text() for r in range(panel.class_table.rowCount())]
    assert cells[w2.state.data.class_names.index(Path(copy).parent.name)].endswith("+ 1 excluded")
    assert panel.path_edit.text() == str(planted.root)


def test_a_lower_hash_distance_keeps_only_exact_copies(make_window, qtbot, planted):
    w = _open(make_window, qtbot, planted.root, start_engine=False)
    view = _show_duplicates(qtbot, w.dataset_panel)
    view.distance.selectAll()
    qtbot.keyClicks(view.distance, "0")
    qtbot.keyClick(view.distance, Qt.Key_Return)
    assert w.state.dataset_config.duplicate_distance == 0
    kinds = [view.tree.topLevelItem(g).text(0) for g in range(view.tree.topLevelItemCount())]
    assert sum("exact" in k for k in kinds) == 6


def _counts_seen(panel) -> dict:
    """What the Dataset tab says about the numbers of images: the header, each class row, the memory note."""
    import re

    head = re.fullmatch(r"([\d,]+) images in \d+ classes: ([\d,]+) for training, ([\d,]+) for validation"
                        r"(?:, ([\d,]+) excluded)?", panel.totals.text())
    assert head, panel.totals.text()
    total, train, val, excluded = (int((g or "0").replace(",", "")) for g in head.groups())
    t = panel.class_table
    cells = [t.item(r, 1).text() for r in range(t.rowCount())]
    used = [re.fullmatch(r"([\d,]+)(?: \+ ([\d,]+) excluded)?", c) for c in cells]
    assert all(used), cells
    decoded = re.match(r"([\d,]+) images decoded", panel.cache_estimate.text())
    assert decoded, panel.cache_estimate.text()
    return {"total": total, "train": train, "val": val, "excluded": excluded,
            "class rows": sum(int(m.group(1).replace(",", "")) for m in used),
            "class rows excluded": sum(int((m.group(2) or "0").replace(",", "")) for m in used),
            "decoded": int(decoded.group(1).replace(",", "")), "cells": cells}


def test_after_an_exclusion_every_count_on_the_dataset_tab_adds_up(make_window, qtbot, planted_copy):
    root = Path(planted_copy.root)
    for folder in sorted(p for p in root.iterdir() if p.is_dir())[:2]:
        (folder / "broken.png").write_text("not a picture")  # two files found, but no images
    w = _open(make_window, qtbot, root, start_engine=False)
    panel = w.dataset_panel
    seen = _counts_seen(panel)
    assert seen["train"] + seen["val"] == seen["total"] == seen["class rows"] == seen["decoded"]
    assert seen["excluded"] == 0

    view = _show_duplicates(qtbot, panel)
    copy = planted_copy.cross_class[0][1]
    item = next(i for i in _member_items(view.tree) if i.data(0, Qt.UserRole) == copy)
    _click_item(qtbot, view.tree, item)
    qtbot.mouseClick(view.exclude_button, Qt.LeftButton)
    after = _counts_seen(panel)
    assert after["total"] == after["decoded"] == seen["total"]  # still decoded, still counted once
    assert after["excluded"] == after["class rows excluded"] == 1
    assert after["train"] + after["val"] + after["excluded"] == after["total"]
    assert after["class rows"] == after["train"] + after["val"]
    assert f"+ 1 excluded" in after["cells"][w.state.data.class_names.index(Path(copy).parent.name)]

    qtbot.mouseClick(view.changes.undo_button, Qt.LeftButton)
    assert _counts_seen(panel) == seen


def test_the_few_images_and_imbalance_warnings_count_the_images_trained_on(make_window, qtbot, tmp_path):
    """centre has 10 images, as many as a class needs and half the largest: no warning. With a copy among them
    excluded it trains on 9, which both warnings say; bringing the copy back takes them away."""
    import shutil

    from conftest import write_dataset

    root = write_dataset(tmp_path / "data", classes=("left", "top"), per_class=20)
    write_dataset(root, classes=("centre",), per_class=9, seed=1)
    copy = root / "centre" / "copy of centre_00.png"
    shutil.copyfile(root / "centre" / "centre_00.png", copy)
    w = _open(make_window, qtbot, root, start_engine=False)
    panel = w.dataset_panel
    assert not panel.imbalance.isVisible()

    view = _show_duplicates(qtbot, panel)
    _click_item(qtbot, view.tree, next(i for i in _member_items(view.tree) if i.data(0, Qt.UserRole) == str(copy)))
    qtbot.mouseClick(view.exclude_button, Qt.LeftButton)
    assert _counts_seen(panel)["cells"] == ["9 + 1 excluded", "20", "20"]
    warnings = panel.imbalance.text().splitlines()
    assert panel.imbalance.isVisible() and len(warnings) == 2, warnings
    assert warnings[0].startswith("Few images: centre (9) has fewer than 10 usable images")
    assert warnings[1].startswith("Classes are imbalanced: centre (9) have less than half the images of the "
                                  "largest class (20).")

    qtbot.mouseClick(view.changes.undo_button, Qt.LeftButton)
    assert not panel.imbalance.isVisible()


def test_the_changes_listed_are_those_of_the_dataset_shown(make_window, qtbot, planted, tmp_path):
    from conftest import write_dataset

    w = _open(make_window, qtbot, planted.root, start_engine=False)
    view = _show_duplicates(qtbot, w.dataset_panel)
    copy = planted.cross_class[0][1]
    _click_item(qtbot, view.tree, next(i for i in _member_items(view.tree) if i.data(0, Qt.UserRole) == copy))
    qtbot.mouseClick(view.exclude_button, Qt.LeftButton)
    assert view.changes.list.count() == 1 and view.changes.undo_button.isEnabled()

    other = write_dataset(tmp_path / "other", classes=("left", "top"), per_class=6, size=16)
    w.dataset_panel.load_folder(str(other))
    qtbot.waitUntil(lambda: w.state.data is not None and w.state.data.root == other, timeout=30000)
    assert view.changes.list.count() == 0 and view.changes.title.text() == "Changes: none"
    assert not view.changes.undo_button.isEnabled()

    w.dataset_panel.load_folder(str(planted.root))  # back to the first: its change and its Undo come back
    qtbot.waitUntil(lambda: w.state.data.root == Path(planted.root), timeout=30000)
    assert view.changes.list.count() == 1 and view.changes.undo_button.isEnabled()
    qtbot.mouseClick(view.changes.undo_button, Qt.LeftButton)
    assert not w.state.excluded


def test_a_hash_distance_out_of_range_is_refused_out_loud_and_changes_nothing(make_window, qtbot, planted):
    w = _open(make_window, qtbot, planted.root, start_engine=False)
    view = _show_duplicates(qtbot, w.dataset_panel)
    groups = view.tree.topLevelItemCount()
    refusal = view.findChild(QLabel, "distanceRefused")
    view.distance.selectAll()
    qtbot.keyClicks(view.distance, "16")
    assert refusal.isVisible()
    assert refusal.text() == (f"Hash distance goes from 0 to {MAX_DISTANCE}: 16 is refused, "
                              f"and it stays {DEFAULT_DISTANCE}.")
    assert w.state.dataset_config.duplicate_distance == DEFAULT_DISTANCE  # the 1 typed on the way was not applied
    assert view.tree.topLevelItemCount() == groups
    qtbot.keyClick(view.distance, Qt.Key_Return)
    assert view.distance.text() == str(DEFAULT_DISTANCE) and refusal.isVisible()
    assert w.state.dataset_config.duplicate_distance == DEFAULT_DISTANCE and view.tree.topLevelItemCount() == groups
    view.distance.selectAll()
    qtbot.keyClicks(view.distance, "10")
    assert not refusal.isVisible() and w.state.dataset_config.duplicate_distance == DEFAULT_DISTANCE
    qtbot.keyClick(view.distance, Qt.Key_Return)
    assert w.state.dataset_config.duplicate_distance == 10


def test_a_number_of_retrains_out_of_range_is_refused_out_loud(qtbot):
    from cnndesk.ui.data_quality_view import LabelDoubtsView

    view = LabelDoubtsView()
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)
    asked = []
    view.score_requested.connect(asked.append)
    view.kfold.setChecked(True)
    view.folds.selectAll()
    qtbot.keyClicks(view.folds, "12")
    refusal = view.findChild(QLabel, "foldsRefused")
    assert refusal.isVisible()
    assert refusal.text() == "The number of retrains goes from 2 to 10: 12 is refused, and it stays 3."
    qtbot.keyClick(view.folds, Qt.Key_Return)
    assert view.folds.text() == "3 retrains"
    qtbot.mouseClick(view.find_button, Qt.LeftButton)
    assert asked == [3]


def test_a_file_moves_to_another_class_only_after_confirmation(make_window, qtbot, planted_copy, monkeypatch):
    w = _open(make_window, qtbot, planted_copy.root, start_engine=False)
    view = _show_duplicates(qtbot, w.dataset_panel)
    wrong = planted_copy.cross_class[0][1]  # a copy filed under a second class
    own_class = Path(planted_copy.cross_class[0][0]).parent.name
    asked = []
    monkeypatch.setattr(QInputDialog, "getItem", lambda parent, title, label, items, *a: (own_class, True))
    answers = iter([QMessageBox.No, QMessageBox.Yes])

    def question(parent, title, text, *a):
        asked.append(text)
        return next(answers)

    monkeypatch.setattr(QMessageBox, "question", question)
    item = next(i for i in _member_items(view.tree) if i.data(0, Qt.UserRole) == wrong)
    _click_item(qtbot, view.tree, item)
    qtbot.mouseClick(view.move_button, Qt.LeftButton)
    assert len(asked) == 1 and own_class in asked[0]
    assert Path(wrong).is_file() and view.changes.list.count() == 0  # "No": nothing moved

    qtbot.mouseClick(view.move_button, Qt.LeftButton)
    target = Path(planted_copy.root) / own_class / Path(wrong).name
    assert target.is_file() and not Path(wrong).exists()
    qtbot.waitUntil(lambda: str(target) in w.state.data.paths, timeout=30000)  # read again
    data = w.state.data
    assert data.class_names[data.labels[data.paths.index(str(target))]] == own_class
    assert view.changes.list.item(0).text().startswith(f"Moved {Path(wrong).name} from")

    qtbot.mouseClick(view.changes.undo_button, Qt.LeftButton)
    assert Path(wrong).is_file() and not target.exists()
    qtbot.waitUntil(lambda: wrong in w.state.data.paths, timeout=30000)


def test_likely_mislabelled_images_are_found_after_training(window, qtbot, tmp_path):
    planted = write_planted_dataset(tmp_path / "shapes", per_class=16, size=32, swapped=4, cross_class=0, near=0,
                                    exact=0)
    w = window
    w.dataset_panel.load_folder(str(planted.root))
    qtbot.waitUntil(lambda: w.state.data is not None and w.state.data.root == planted.root,
                    timeout=30000)
    set_epochs(w, qtbot, 5)
    w.model_panel.batch_size.setValue(8)
    w.model_panel.learning_rate.setValue(0.003)
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.state.has_model and not w.state.training, timeout=120000)
    w.tabs.setCurrentIndex(w.TAB_VIEWER)
    ev = w.viewer_panel.evaluation_view
    w.viewer_panel.tabs.setCurrentWidget(ev)
    ev.browser_tabs.setCurrentWidget(ev.label_doubts_tab)
    doubts = ev.label_doubts

    # many retrains, cancelled at once: the job stops and says so
    qtbot.mouseClick(doubts.kfold, Qt.LeftButton)
    doubts.folds.setValue(8)
    qtbot.mouseClick(doubts.find_button, Qt.LeftButton)
    assert doubts.cancel_button.isVisible()
    qtbot.mouseClick(doubts.cancel_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: doubts.find_button.isEnabled(), timeout=60000)
    assert doubts.note.text() == "Scoring cancelled."

    doubts.folds.setValue(2)
    qtbot.mouseClick(doubts.find_button, Qt.LeftButton)
    # the job's own progress and status reach the view while it runs (its one channel: no polling)
    qtbot.waitUntil(lambda: doubts.note.text() in ("Retrain 1 of 2…", "Retrain 2 of 2…")
                    and doubts.progress.value() > 0, timeout=120000)
    qtbot.waitUntil(lambda: doubts.find_button.isEnabled(), timeout=180000)
    table = doubts.table
    assert table.rowCount() > 0, doubts.note.text()
    assert "validation images scored by the current model" in doubts.note.text()
    assert "training images scored by 2 retrains (5 epoch(s) each)" in doubts.note.text()
    rows = [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]
    for file, label, predicted, confidence, p_label, how in (r[1:] for r in rows):
        assert label == Path(file).parent.name and predicted != label and confidence.endswith("%")
        assert float(p_label.rstrip("%")) <= float(confidence.rstrip("%"))
    swapped = {str(Path(p).relative_to(planted.root)) for p in planted.swapped}
    top = [r[1] for r in rows[:8]]
    assert swapped & set(top), (top, swapped)  # at least one swapped label among the first candidates

    # exclude the first candidate from the Evaluation tab; the change is listed there and in the dataset panel
    qtbot.mouseClick(table.viewport(), Qt.LeftButton, pos=table.visualItemRect(table.item(0, 1)).center())
    qtbot.mouseClick(doubts.exclude_button, Qt.LeftButton)
    first = str(planted.root / rows[0][1])
    assert first in w.state.excluded
    assert w.dataset_panel.duplicates.changes.list.count() == 1 and doubts.changes.list.count() == 1
    assert table.item(0, 1).text().endswith("(excluded)")  # the list stays, the exclusion shows
    qtbot.mouseClick(doubts.changes.undo_button, Qt.LeftButton)
    assert not w.state.excluded


@pytest.mark.slow
def test_the_pair_search_compares_pictures_block_by_block_so_lookalike_candidates_are_never_all_held(monkeypatch):
    """Simple shapes on plain backgrounds hash alike by the million; only the pairs that are the same picture are
    kept."""
    import tracemalloc

    from cnndesk.core.data import copies as quality

    monkeypatch.setattr(quality, "PAIR_BLOCK", 1 << 18)
    n = 4000  # every hash alike: 8 million candidate pairs, 96 MB as (i, j, distance) rows
    hashes = np.zeros(n, np.uint64)
    images = np.random.default_rng(3).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)  # all unlike
    images[[20, 30]] = images[10]  # three alike: three pairs
    thumbnails = picture_thumbnails(images)
    tracemalloc.start()
    try:
        pairs = quality.similar_pairs(hashes, thumbnails=thumbnails)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sorted(map(tuple, pairs[:, :2].tolist())) == [(10, 20), (10, 30), (20, 30)]
    assert peak < 24 * 2**20, f"the search held {peak / 2**20:.0f} MB"


@pytest.mark.parametrize("distance", [0, 4, 8, 10])
def test_the_indexed_pair_search_finds_exactly_the_pairs_within_the_distance(distance):
    """Candidates come from an index of hash bands, not from comparing all pairs; they must be the same pairs."""
    rng = np.random.default_rng(distance)
    base = rng.integers(0, 2**63, 400, dtype=np.uint64)
    flips = [np.bitwise_or.reduce(np.uint64(1) << rng.choice(64, k, replace=False).astype(np.uint64))
             if k else np.uint64(0) for k in rng.integers(0, 14, 1200)]
    hashes = np.concatenate([base, np.repeat(base, 3) ^ np.array(flips, np.uint64), base[:50]])  # some alike
    d = hamming(hashes[:, None], hashes[None, :])
    i, j = np.nonzero(np.triu(d <= distance, 1))
    pairs = similar_pairs(hashes, distance)
    assert sorted(map(tuple, pairs.tolist())) == sorted(zip(i.tolist(), j.tolist(), d[i, j].tolist()))


def test_confirming_pairs_of_an_array_or_of_rows_read_on_demand_gives_the_same_pairs():
    rng = np.random.default_rng(5)
    images = rng.integers(0, 255, (40, 16, 16, 3), dtype=np.uint8)
    images[7] = images[3]  # a copy
    images[9] = np.clip(images[3].astype(int) + 2, 0, 255)  # a near copy
    hashes = perceptual_hashes(images)
    candidates = similar_pairs(hashes)

    class OnDemand:  # indexed like an on-disk cache: rows read when asked for
        shape, dtype = images.shape, images.dtype

        def __len__(self):
            return len(images)

        def __getitem__(self, rows):
            return images[rows].copy()

    expected = confirm_pairs(images, candidates)
    np.testing.assert_array_equal(confirm_pairs(OnDemand(), candidates), expected)
    np.testing.assert_array_equal(similar_pairs(hashes, thumbnails=picture_thumbnails(images)), expected)
    assert {(3, 7), (3, 9), (7, 9)} <= set(map(tuple, expected[:, :2].tolist()))
