"""``cnndesk-cli`` as a script author uses it: outputs, JSON lines, files written, exit codes."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnndesk.cli import main
from cnndesk.core.intervals import proportion_interval, with_interval
from cnndesk.core.project.store import open_project
from cnndesk.core.data.samples import MARKER, SAMPLE_CLASSES, write_sample_dataset

from conftest import child_env, kept_epoch, read_only_folder, write_dataset



def run(argv) -> tuple[int, str, str]:
    """``main(argv)`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def run_subprocess(argv, **variables) -> subprocess.CompletedProcess:
    """``cnndesk-cli ARGV`` in a child, as a user whose shell sets nothing but ``variables``."""
    return subprocess.run([sys.executable, "-m", "cnndesk.cli", *map(str, argv)], capture_output=True, text=True,
                          env=child_env(**variables), timeout=120)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = write_sample_dataset(tmp_path_factory.mktemp("cli") / "shapes")  # 4 x 400 images
    (root / "circle" / "broken.png").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def trained(shapes, tmp_path_factory):
    project = tmp_path_factory.mktemp("cli") / "shapes-proj"
    code, out, err = run(["train", shapes, "--project", project, "--epochs", 2, "--image-size", 32,
                          "--batch-size", 16, "--json"])
    assert code == 0, err
    return project, [json.loads(line) for line in out.splitlines()]


def test_samples_writes_the_sample_dataset(tmp_path):
    code, out, _ = run(["samples", tmp_path / "s", "--per-class", 3])
    assert code == 0
    assert out.strip() == str(tmp_path / "s")
    for c in SAMPLE_CLASSES:
        files = sorted((tmp_path / "s" / c).iterdir())
        assert [f.name for f in files] == [f"{c}_{i:03d}.png" for i in range(3)]
        assert Image.open(files[0]).size == (64, 64)
    assert (tmp_path / "s" / MARKER).is_file()


@pytest.mark.slow
def test_train_json_reports_each_epoch_and_the_saved_project(trained, shapes):
    project, lines = trained
    assert [d["event"] for d in lines].count("cache") == 1  # where the decoded images are kept, said once
    lines = [d for d in lines if d["event"] != "cache"]
    epochs = [d for d in lines if d["event"] == "epoch"]
    assert [d["epoch"] for d in epochs] == [1, 2]
    for d in epochs:
        assert {"event", "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "images_per_s"} <= set(d)
        assert 0 <= d["val_accuracy"] <= 1 and d["images_per_s"] > 0
        # how sure each validation accuracy is: its 95 % interval, on the 320 validation images
        assert d["val_images"] == 320
        assert d["val_accuracy_interval"] == pytest.approx(list(proportion_interval(d["val_accuracy"] * 320, 320)))
    done = lines[-1]
    assert len(lines) == 5 and done["event"] == "done"
    assert lines[1]["event"] == "note" and lines[1]["message"].startswith("precision: ")  # said once, which
    # 1600 images, 320 for validation: early stopping may act, but not within 2 epochs
    assert lines[0] == {"event": "note", "message": "Early stopping: from epoch 1 of this run on, training stops "
                        "when neither validation accuracy nor validation loss improved for 3 epochs."}
    assert {"event", "project", "val_accuracy", "skipped"} <= set(done)
    assert done["project"] == str(project)
    assert done["val_accuracy"] > 0.5  # 4 classes: chance is 0.25
    assert done["val_images"] == 320 and done["val_accuracy_interval"] == pytest.approx(
        list(proportion_interval(done["val_accuracy"] * 320, 320)))
    assert done["skipped"] == [{"path": str(shapes / "circle" / "broken.png"),
                                "reason": "not a readable image (unknown or damaged format)"}]

    proj, model = open_project(project)
    assert proj.class_names == sorted(SAMPLE_CLASSES)
    assert [h["epoch"] for h in proj.history] == [1, 2]
    assert proj.preprocessing.image_size == (32, 32)
    assert proj.dataset_path == str(shapes.resolve())
    assert model is not None


@pytest.mark.slow
def test_predict_json_classifies_each_image_and_reports_a_bad_one(trained, shapes, tmp_path):
    project, _ = trained
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    images = [shapes / "circle" / "circle_000.png", bad, shapes / "cross" / "cross_001.png"]
    code, out, err = run(["predict", project, *images, "--json"])
    assert code == 1  # after classifying the others
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["path"] for r in rows] == [str(p) for p in images]
    assert set(rows[1]) == {"path", "error"} and "not a readable image" in rows[1]["error"]
    for r in (rows[0], rows[2]):
        assert set(r) == {"path", "top"}
        assert len(r["top"]) == 3  # --top-k defaults to 3
        assert all(set(t) == {"class", "probability"} and t["class"] in SAMPLE_CLASSES for t in r["top"])
        probs = [t["probability"] for t in r["top"]]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-5


@pytest.mark.slow
def test_predict_prints_readable_lines_and_exits_0_when_all_images_read(trained, shapes):
    project, _ = trained
    code, out, _ = run(["predict", project, shapes / "square" / "square_002.png", "--top-k", 2])
    assert code == 0
    [line] = out.splitlines()
    path, tops = line.split(": ")
    assert path == str(shapes / "square" / "square_002.png")
    assert len(tops.split(", ")) == 2 and tops.endswith("%")


@pytest.mark.slow
def test_predict_accepts_a_plain_keras_file(trained, shapes):
    project, _ = trained
    model_file = project / json.loads((project / "project.json").read_text())["model"]["file"]
    code, out, _ = run(["predict", model_file, shapes / "circle" / "circle_003.png", "--json"])
    assert code == 0
    [row] = [json.loads(line) for line in out.splitlines()]
    assert {t["class"] for t in row["top"]} <= {"class 0", "class 1", "class 2", "class 3"}


@pytest.mark.slow
def test_inspect_writes_one_png_per_conv_and_pool_layer_and_a_gradcam(trained, shapes, tmp_path):
    project, _ = trained
    out_dir = tmp_path / "maps"
    code, out, err = run(["inspect", project, shapes / "triangle" / "triangle_004.png", "--out", out_dir])
    assert code == 0
    written = [Path(line) for line in out.splitlines()]
    names = [p.name for p in written]
    assert names == ["01_conv2d_1.png", "02_conv2d_2.png", "03_maxpool2d_3.png", "04_conv2d_4.png",
                     "05_conv2d_5.png", "06_maxpool2d_6.png", names[-1]]
    assert names[-1].startswith("gradcam_") and names[-1][8:-4] in SAMPLE_CLASSES
    assert sorted(written) == sorted(out_dir.iterdir())
    for p in written:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.mode == "RGB"
    with Image.open(written[-1]) as im:
        assert im.size == (32, 32)  # the overlay is the prepared image's size
    assert err.startswith("predicted ")

    code, _, _ = run(["inspect", project, shapes / "triangle" / "triangle_004.png", "--out", out_dir,
                      "--class", "cross"])
    assert code == 0 and (out_dir / "gradcam_cross.png").is_file()


@pytest.mark.slow
def test_inspect_with_an_unknown_class_is_a_user_error(trained, shapes, tmp_path):
    project, _ = trained
    code, out, err = run(["inspect", project, shapes / "circle" / "circle_000.png", "--out", tmp_path,
                          "--class", "hexagon"])
    assert code == 2 and out == ""
    assert err.strip() == "cnndesk-cli: error: Unknown class 'hexagon'; the model knows circle, cross, square, triangle."


@pytest.mark.slow
def test_evaluate_json_gives_metrics_and_a_confusion_matrix(trained):
    project, lines = trained
    code, out, _ = run(["evaluate", project, "--json"])
    assert code == 0
    ev = json.loads(out)
    assert ev["classes"] == sorted(SAMPLE_CLASSES)
    cm = np.array(ev["confusion_matrix"])
    assert cm.shape == (4, 4)
    assert cm.sum() == 320  # 20 % of each class's 400 usable images (one broken file skipped)
    assert ev["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    assert ev["accuracy"] == pytest.approx(lines[-1]["val_accuracy"], abs=1e-6)  # the same split as training
    assert [m["class"] for m in ev["per_class"]] == ev["classes"]
    assert [m["support"] for m in ev["per_class"]] == cm.sum(axis=1).tolist()
    assert len(ev["misclassified"]) == cm.sum() - np.trace(cm)
    # each accuracy with its 95 % interval: the whole one on 320 images, each class's recall on its own images
    assert ev["images"] == 320
    assert ev["accuracy_interval"] == pytest.approx(list(proportion_interval(np.trace(cm), 320)))
    for m, right, support in zip(ev["per_class"], np.diag(cm), cm.sum(axis=1)):
        assert m["recall_interval"] == pytest.approx(list(proportion_interval(right, support)))


@pytest.mark.slow
def test_evaluate_prints_a_table(trained):
    project, _ = trained
    code, out, _ = run(["evaluate", project])
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("accuracy ") and lines[0].endswith(", 320 images) on the validation split")
    assert "(95 % interval " in lines[0]
    header = next(i for i, line in enumerate(lines) if line.startswith("class "))
    assert header + 1 < len(lines) and "recall 95 % interval" in lines[header]
    assert all("–" in line for line in lines[header + 1:header + 5])  # each class's recall interval
    assert "confusion matrix (rows: true, columns: predicted)" in lines


@pytest.mark.slow
def test_training_keeps_a_temperature_and_evaluate_json_reports_calibration_before_and_after(trained):
    project, lines = trained
    done = lines[-1]
    assert 0.05 <= done["temperature"] <= 20 and 0 <= done["ece_after"] <= 1
    proj, _ = open_project(project, load_model=False)
    [kept] = proj.runs
    assert kept.trust["temperature"] == done["temperature"] and kept.trust["novelty"]["threshold"] > 0
    # the temperature minimises the validation log-loss (the ECE may move either way by a little)
    assert kept.trust["calibration"]["log_loss_after"] <= kept.trust["calibration"]["log_loss_before"]
    code, out, err = run_cli_json(["evaluate", project, "--json"])
    calibration = out["calibration"]
    assert calibration["temperature"] == pytest.approx(done["temperature"]) and calibration["fitted"] is False
    assert calibration["declined"] is None and done["not_calibrated"] is None  # 320 validation images: fitted
    assert calibration["ece_before"] == pytest.approx(done["ece_before"], abs=1e-6)
    assert calibration["ece_after"] == pytest.approx(done["ece_after"], abs=1e-6)
    assert len(calibration["reliability_before"]) == len(calibration["reliability_after"]) == 15
    assert sum(b["count"] for b in calibration["reliability_after"]) == 320
    assert calibration["unlike_training"] <= 0.05 + 1e-9  # the threshold lets 95 % of these very images pass


def run_cli_json(argv):
    code, out, err = run(argv)
    assert code == 0, err
    return code, json.loads(out), err


@pytest.mark.slow
def test_predict_classifies_a_folder_into_a_csv_and_sorts_copies_into_class_folders(trained, shapes, tmp_path):
    project, _ = trained
    inbox = tmp_path / "inbox"
    for c in ("circle", "square"):
        (inbox / "deep" / c).mkdir(parents=True)
        for i in range(3):
            (inbox / "deep" / c / f"{c}_{i}.png").write_bytes((shapes / c / f"{c}_{i:03d}.png").read_bytes())
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(inbox / "noise.png")
    (inbox / "readme.txt").write_text("not an image")
    table, dest = tmp_path / "rows.csv", tmp_path / "sorted"
    code, out, err = run(["predict", project, inbox, "--csv", table, "--sort-into", dest, "--flag-folders", "--json"])
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [Path(r["path"]).name for r in rows] == [f"circle_{i}.png" for i in range(3)] + \
        [f"square_{i}.png" for i in range(3)] + ["noise.png"]
    assert all(set(r) == {"path", "top", "flags"} and len(r["top"]) == 3 for r in rows)
    assert "1 not an image file type" in err and "7 images: 0 unreadable" in err
    import csv

    with open(table, newline="", encoding="utf-8") as f:
        cells = list(csv.DictReader(f))
    assert [c["path"] for c in cells] == [r["path"] for r in rows]
    assert [c["class"] for c in cells] == [r["top"][0]["class"] for r in rows]
    assert [c["flags"] for c in cells] == ["; ".join(r["flags"]) for r in rows]
    sorted_files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.png"))
    assert len(sorted_files) == 7
    for r in rows:  # a flagged image in its flag's folder, the others in their class's
        folder = next((f for f in ("unlike training", "not sure") if f in r["flags"]), r["top"][0]["class"])
        assert f"{folder}/{Path(r['path']).name}" in sorted_files
    assert len(list(inbox.rglob("*.png"))) == 7  # copies: nothing left the inbox
    # a later command undoes the sort: the copies are gone, the originals stay
    code, out, err = run(["undo-sort", dest])
    assert code == 0, err
    assert out.strip() == f"undid 7 sorted images in {dest}"
    assert not [p for p in dest.rglob("*") if p.is_file()] and len(list(inbox.rglob("*.png"))) == 7
    code, _, err = run(["undo-sort", dest])
    assert code == 2 and "nothing to undo" in err
    # moved images go back where they were
    code, _, err = run(["predict", project, inbox / "deep", "--sort-into", dest, "--move"])
    assert code == 0 and "undo: cnndesk-cli undo-sort" in err
    assert not list((inbox / "deep").rglob("*.png")) and len(list(dest.rglob("*.png"))) == 6
    assert run(["undo-sort", dest])[0] == 0
    assert sorted(p.name for p in (inbox / "deep").rglob("*.png")) == sorted(
        f"{c}_{i}.png" for c in ("circle", "square") for i in range(3))
    # --move without --sort-into is a mistake said in one line
    code, _, err = run(["predict", project, inbox, "--move"])
    assert code == 2 and "--sort-into" in err


@pytest.mark.slow
def test_an_export_of_a_project_gives_the_calibrated_probabilities(trained, shapes, tmp_path):
    import keras

    from cnndesk.core.model.calibration import softmax
    from cnndesk.core.data.images import decode_image
    from cnndesk.core.work.trust import ModelHeads

    project, lines = trained
    temperature = lines[-1]["temperature"]
    code, out, err = run(["export", project, "--format", "keras", "--out", tmp_path / "m.keras"])
    assert code == 0, err
    proj, model = open_project(project)
    x = np.stack([decode_image(shapes / "cross" / f"cross_{i:03d}.png", proj.preprocessing) for i in range(4)])
    _, logits = ModelHeads(model, proj.preprocessing)(x)
    exported = np.asarray(keras.saving.load_model(tmp_path / "m.keras")(x.astype(np.float32), training=False))
    np.testing.assert_allclose(exported, softmax(logits, temperature), atol=1e-5)
    # and predict shows those very probabilities
    code, out, err = run(["predict", project, shapes / "cross" / "cross_000.png", "--json", "--top-k", 4])
    [row] = [json.loads(line) for line in out.splitlines()]
    shown = {t["class"]: t["probability"] for t in row["top"]}
    assert [shown[c] for c in proj.class_names] == pytest.approx(exported[0].tolist(), abs=1e-5)


@pytest.mark.slow
def test_train_json_says_why_it_stopped_and_which_epoch_it_kept(tiny_dataset, tmp_path):
    code, out, err = run(["train", tiny_dataset, "--project", tmp_path / "p", "--epochs", 4, "--image-size", 32,
                          "--batch-size", 8, "--json"])
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["event"] == "cache" and lines[0]["on_disk"] is False  # a small dataset stays in memory
    lines = lines[1:]
    assert lines[0] == {"event": "note", "message": "Validation set of 12 images: early stopping is off (it needs "
                        "at least 50 to tell an improvement from noise); all epochs will run."}
    history = [d for d in lines if d["event"] == "epoch"]
    done = lines[-1]
    assert done["event"] == "done" and len(history) == 4
    assert done["stop_reason"] == "all_epochs" and done["stop_message"] == "Trained all 4 epochs."
    assert done["stopped_early"] is False
    kept = kept_epoch(history, n_val=12)
    assert done["kept_epoch"] == done["best_epoch"] == kept
    row = history[kept - 1]
    assert done["kept_message"].startswith(f"Kept epoch {kept}'s weights: ")
    assert f"validation accuracy {with_interval(row['val_accuracy'], 12)}" in done["kept_message"]
    assert done["val_accuracy"] == row["val_accuracy"]
    assert done["notes"] == [lines[0]["message"]]
    assert done["near_chance"] is False and done["chance_message"] is None
    assert open_project(tmp_path / "p")[0].best_epoch == kept


def _same_images(folder):
    """Two classes of the same pictures: nothing to learn, validation accuracy stays exactly at chance
    (each picture is in both classes; the split keeps such a pair on one side, so validation holds whole
    pairs, of which the model gets exactly one right)."""
    for c in ("a", "b"):
        (folder / c).mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (16, 16), (40 + 12 * i,) * 3).save(folder / c / f"{i}.png")
    return folder


@pytest.mark.slow
def test_train_json_says_when_the_model_is_at_chance(tmp_path):
    code, out, err = run(["train", _same_images(tmp_path / "same"), "--project", tmp_path / "p", "--epochs", 2,
                          "--image-size", 16, "--json"])
    assert code == 0, err
    done = json.loads(out.splitlines()[-1])
    assert done["val_accuracy"] == 0.5
    assert done["near_chance"] is True
    assert done["chance_message"].startswith("Validation accuracy 0.500 (95 % interval 0.150–0.850, 4 images) is at "
                                             "or near chance (0.500 with 2 classes; its interval reaches down to "
                                             "chance)")
    assert done["val_images"] == 4 and done["val_accuracy_interval"] == pytest.approx([0.150, 0.850], abs=1e-3)
    assert "more epochs" in done["chance_message"] and "more images per class" in done["chance_message"]


@pytest.mark.slow
def test_train_text_says_why_it_stopped_which_epoch_it_kept_and_warns_at_chance(tmp_path):
    code, out, err = run(["train", _same_images(tmp_path / "same"), "--project", tmp_path / "p", "--epochs", 2, "--image-size", 16])
    assert code == 0, err
    lines = err.splitlines()
    assert "Validation set of 4 images: early stopping is off (it needs at least 50 to tell an improvement from " \
           "noise); all epochs will run." in lines
    assert "Trained all 2 epochs." in lines
    assert any(line.startswith("Kept epoch ") and "best validation accuracy 0.500 (95 % interval 0.150–0.850, 4 "
               "images)" in line for line in lines)
    assert "warning: Validation accuracy 0.500 (95 % interval 0.150–0.850, 4 images) is at or near chance (0.500 " \
           "with 2 classes; its interval reaches down to chance): the model has not " \
           "clearly learned to tell the classes apart. What usually helps: more epochs, augmentation (flip, " \
           "rotate, zoom), a smaller image size, and more images per class." in lines


@pytest.mark.slow
def test_train_without_json_prints_progress_on_stderr(tmp_path):
    write_sample_dataset(tmp_path / "s", per_class=5, size=32)
    code, out, err = run(["train", tmp_path / "s", "--project", tmp_path / "p", "--epochs", 1, "--image-size", 16,
                          "--batch-size", 8])
    assert code == 0
    assert "20 images in 4 classes (circle: 5, cross: 5, square: 5, triangle: 5); 16 for training, 4 for validation" \
        in err
    assert "(no near-duplicate group spans training and validation)" in err  # the split says what it did
    assert "epoch 1/1: loss " in err
    [epoch] = [line for line in err.splitlines() if line.startswith("epoch 1/1: loss ")]
    assert " val_acc " in epoch and ", 4 images) (" in epoch and "(95 % interval " in epoch
    assert out.startswith(f"saved {tmp_path / 'p'}; validation accuracy ")
    assert ", 4 images)" in out and "(95 % interval " in out


@pytest.mark.slow
def test_train_says_its_precision_and_precision_flag_forces_it(tmp_path):
    from cnndesk.core.training.precision import choose_precision

    write_sample_dataset(tmp_path / "s", per_class=5, size=16)
    common = ["--epochs", 1, "--image-size", 16, "--batch-size", 8]
    code, _, err = run(["train", tmp_path / "s", "--project", tmp_path / "auto", *common])
    assert code == 0, err
    assert choose_precision("auto").note in err.splitlines()  # this CPU's choice, e.g. "precision: float32 (…)"
    code, _, err = run(["train", tmp_path / "s", "--project", tmp_path / "forced", *common, "--precision", "bfloat16"])
    assert code == 0, err
    assert any(line.startswith("precision: bfloat16 mixed precision (chosen in the settings") for line in err.splitlines())
    saved = json.loads((tmp_path / "forced" / "project.json").read_text())
    assert saved["settings"]["precision"] == "bfloat16"
    code, _, err = run(["train", tmp_path / "s", "--project", tmp_path / "bad", *common, "--precision", "half"])
    assert code == 2 and "invalid choice: 'half'" in err


@pytest.mark.slow
def test_train_says_with_the_dataset_summary_when_the_images_are_scaled_up(tmp_path):
    write_sample_dataset(tmp_path / "s", per_class=5, size=16)
    note = "Images are 16×16 px; they are scaled up to 32×32 for training."
    argv = ["train", tmp_path / "s", "--epochs", 1, "--image-size", 32, "--batch-size", 8]
    code, _, err = run([*argv, "--project", tmp_path / "p"])
    assert code == 0, err
    lines = err.splitlines()
    assert lines[0].startswith("20 images in 4 classes") and lines[1] == note
    code, out, err = run([*argv, "--project", tmp_path / "q", "--json"])
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert events[0]["event"] == "cache" and events[1] == {"event": "note", "message": note}
    assert [e for e in events if e.get("message") == note] == [events[1]]  # said once


@pytest.mark.parametrize("argv, words", [
    (["train", "{tmp}/nowhere", "--project", "{tmp}/p"], "does not exist"),
    (["train", "{tmp}", "--project", "{tmp}/p", "--image-size", "3"], "--image-size: image size must be between"),
    (["train", "{tmp}", "--project", "{tmp}/p", "--image-size", "big"], "image size must be N or HxW"),
    (["train", "{tmp}", "--project", "{tmp}/p", "--preset", "resnet"], "invalid choice: 'resnet'"),
    (["train", "{tmp}", "--project", "{tmp}/p", "--learning-rate", "-1"], "learning rate must be a positive"),
    (["train", "{tmp}", "--project", "{tmp}/p", "--epochs", "many"], "--epochs: must be a whole number"),
    (["predict", "{tmp}/bad.keras", "{tmp}/x.png"], "bad.keras is not a readable .keras model"),
    (["predict", "{tmp}/missing-project", "{tmp}/x.png"], "does not exist"),
    (["evaluate", "{tmp}"], "is not a cnndesk project"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_user_errors_exit_2_with_one_line(tmp_path, argv, words):
    (tmp_path / "bad.keras").write_text("not a model")
    code, out, err = run([a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("cnndesk-cli: error: ")
    assert words in err


@pytest.mark.parametrize("case", ["missing dataset", "bad model file"])
def test_user_errors_in_a_real_process_print_one_line_and_no_traceback(tmp_path, case):
    if case == "missing dataset":
        argv = ["train", tmp_path / "nowhere", "--project", tmp_path / "p"]
    else:
        (tmp_path / "model.keras").write_bytes(b"PK\x03\x04 truncated")
        Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
        argv = ["predict", tmp_path / "model.keras", tmp_path / "x.png"]
    proc = run_subprocess(argv)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr  # no TensorFlow start-up noise either
    assert proc.stderr.startswith("cnndesk-cli: error: ")
    assert proc.stdout == ""


# ---------------------------------------------------------------------------
# the destination is checked before the work (issue 12)

def _no_training(monkeypatch):
    import cnndesk.core.training.fitting as training

    def train(*args, **kwargs):
        raise AssertionError("training started although the project could not be saved")

    monkeypatch.setattr(training, "train", train)


def test_train_into_a_read_only_folder_fails_before_reading_or_training(tmp_path, monkeypatch):
    ro = read_only_folder(tmp_path / "ro", monkeypatch)
    _no_training(monkeypatch)
    import cnndesk.core.data.dataset as dataset

    monkeypatch.setattr(dataset, "load_dataset", lambda *a, **k: pytest.fail("the dataset was read"))
    try:
        code, out, err = run(["train", tmp_path / "nowhere-needed", "--project", ro, "--epochs", 1])
    finally:
        ro.chmod(0o755)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith(f"cnndesk-cli: error: Cannot save the project in {ro}: ")
    assert "read-only" in err or "Permission denied" in err
    assert "previous save" not in err and os.listdir(ro) == []


def test_train_without_room_for_the_model_fails_before_training(tmp_path, monkeypatch):
    import shutil

    from cnndesk.core.project import store as project

    # enough per class for no warning on stdout, and as large as they are read: nothing is scaled up either
    write_sample_dataset(tmp_path / "shapes", per_class=12, size=128)
    _no_training(monkeypatch)
    usage = shutil.disk_usage(tmp_path)
    # a disk with 100 kB left: the seed model at 128 px (about 40,000 weights and Adam's two slots) does not fit
    monkeypatch.setattr(project.shutil, "disk_usage", lambda p: usage._replace(free=100_000))
    code, out, err = run(["train", tmp_path / "shapes", "--project", tmp_path / "p", "--image-size", 128, "--json"])
    assert code == 2 and [json.loads(line)["event"] for line in out.splitlines()] == ["cache"]  # then nothing
    assert len(err.splitlines()) == 1
    assert err.startswith(f"cnndesk-cli: error: Cannot save the project in {tmp_path / 'p'}: the disk has 0.1 MB "
                          "free and the model needs about ")
    assert not (tmp_path / "p").exists()


# hostile and careless datasets (issue 12)

def _messy_dataset(tmp_path) -> Path:
    """Classes with odd names, a link out of the dataset to thousands of files, unreadable and imbalanced images."""
    root = write_sample_dataset(tmp_path / "messy", per_class=12, size=32)
    os.rename(root / "circle", os.fsencode(root) + b"/circ\xe9")  # not UTF-8
    os.rename(root / "cross", root / "two\nlines")
    for f in sorted((root / "square").iterdir())[:8]:  # square: 4 left, imbalanced
        f.unlink()
    for f in sorted((root / "triangle").iterdir())[:3]:  # 3 of 40 image files unreadable... plus 3 more below
        f.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    for f in sorted((root / "two\nlines").iterdir())[:3]:
        f.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    share = tmp_path / "usr-share"
    share.mkdir()
    for i in range(2000):
        (share / f"doc{i}.txt").write_text("x")
    os.symlink(share, root / "share")
    for i in range(1500):  # files of other types inside the dataset: skipped, counted, not listed one by one
        (root / "triangle" / f"notes{i}.txt").write_text("x")
    return root


@pytest.mark.slow
def test_train_json_carries_every_warning_and_the_full_skipped_list(tmp_path):
    root = _messy_dataset(tmp_path)
    code, out, err = run(["train", root, "--project", tmp_path / "p", "--epochs", 1, "--image-size", 16,
                          "--batch-size", 8, "--json"])
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert any(w.startswith("Classes are imbalanced: square (4)") for w in warnings)  # missing from --json before
    assert any("link(s) out of the dataset folder were not followed" in w for w in warnings)
    assert any(w.startswith("6 of the 40 image files (15.0%) could not be read") for w in warnings)
    assert any(w.startswith("Few images: square (4)") for w in warnings)
    done = events[-1]
    assert len(done["skipped"]) == 1 + 1500 + 6  # the link, the text files, the unreadable images
    assert done["skipped_by_reason"]["not an image file type cnndesk reads"] == 1500
    assert done["skipped_by_reason"]["link outside the dataset folder"] == 1
    # the odd names are stored as they are, and the project reopens with them
    project, _ = open_project(tmp_path / "p", load_model=False)
    assert project.class_names == ["circ\udce9", "square", "triangle", "two\nlines"]


@pytest.mark.slow
def test_train_text_summarizes_skipped_files_and_prints_odd_names_escaped(tmp_path):
    root = _messy_dataset(tmp_path)
    proc = run_subprocess(["train", root, "--project", tmp_path / "p", "--epochs", 1, "--image-size", 16,
                           "--batch-size", 8, "--min-steps", 0])
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr.splitlines()
    assert len(err) < 24, proc.stderr  # not one line per skipped file (1,507 of them)
    assert err[0].startswith("34 images in 4 classes (circ\\xe9: 12, square: 4, triangle: 9, two\\nlines: 9)")
    assert err[1] == ("skipped 1,507 files: 1,500 not an image file type cnndesk reads, 6 not a readable image, "
                      "1 link outside the dataset folder")
    assert any(line.startswith("  … and 1,502 more") for line in err)
    # the dataset's four warnings (one epoch at 16 px also ends near chance, which is warned about after training)
    assert sum(line.startswith("warning: ") and "chance" not in line for line in err) == 4, proc.stderr
    assert "Traceback" not in proc.stderr
    # predicting prints the odd class names escaped, on a terminal that only takes UTF-8
    image = next((root / "square").iterdir())
    proc = run_subprocess(["predict", tmp_path / "p", image, "--top-k", 4])
    assert proc.returncode == 0, proc.stderr
    assert "circ\\xe9" in proc.stdout and "two\\nlines" in proc.stdout and proc.stdout.count("\n") == 1


# TF_CPP_MIN_LOG_LEVEL=2 is what many TensorFlow users keep in their shell profile: it lets TensorFlow's errors
# through, and the "failed call to cuInit" of a machine without a GPU is logged as one
@pytest.mark.slow
@pytest.mark.parametrize("log_level", [{}, {"TF_CPP_MIN_LOG_LEVEL": "2"}], ids=["unset", "TF_CPP_MIN_LOG_LEVEL=2"])
def test_library_warnings_do_not_reach_the_terminal(tmp_path, log_level):
    root = write_sample_dataset(tmp_path / "s", per_class=12, size=32)
    # a JPEG with a damaged EXIF block: Pillow warns "Corrupt EXIF data"; the image itself is fine
    img = Image.new("RGB", (16, 16), (200, 10, 10))
    exif = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x01\x01\x0f\x00\x02\xff\xff\xff\xf0\x00\x00\x00\x00"
    img.save(root / "circle" / "odd_exif.jpg", exif=exif)
    proc = run_subprocess(["train", root, "--project", tmp_path / "p", "--epochs", 1, "--image-size", 16,
                           "--batch-size", 8, "--min-steps", 0], **log_level)
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr and "EXIF" not in proc.stderr, proc.stderr
    assert "I0000" not in proc.stderr and "E0000" not in proc.stderr and "cuda" not in proc.stderr.lower(), proc.stderr
    assert proc.stderr.startswith("49 images in 4 classes")


def test_running_out_of_memory_is_one_line_not_a_traceback(monkeypatch, capsys):
    from cnndesk import cli

    def exhausted(args):
        raise MemoryError()

    monkeypatch.setitem(cli.COMMANDS, "samples", exhausted)
    assert cli.main(["samples", "anywhere"]) == 2
    err = capsys.readouterr().err
    assert err == "cnndesk-cli: error: out of memory: use a smaller image size, batch size or model\n"


@pytest.mark.parametrize("size", ["8", "1500", "2048", "96x1500", "2048x8"])
def test_the_app_opens_every_image_size_the_cli_trains_at(qtbot, size):
    """A project the CLI trained at, say, 1500 px shows 1500 px in the app, not a fallback size."""
    from cnndesk.cli import build_parser
    from cnndesk.core.data.dataset import DatasetConfig
    from cnndesk.core.data.images import Preprocessing
    from cnndesk.ui.dataset_panel import DatasetPanel

    cli_size = build_parser().parse_args(["train", "data", "--project", "p", "--image-size", size]).image_size
    panel = DatasetPanel()
    qtbot.addWidget(panel)
    panel.set_config(DatasetConfig(Preprocessing(cli_size)))  # what opening the project does
    assert panel.config().preprocessing.image_size == cli_size
    assert not panel.size_error.isVisibleTo(panel)


def test_an_image_size_both_refuse_names_the_same_limits(qtbot):
    from cnndesk.core.data.images import MAX_IMAGE_SIDE
    from cnndesk.ui.dataset_panel import DatasetPanel

    code, out, err = run(["train", "data", "--project", "p", "--image-size", MAX_IMAGE_SIDE + 1])
    assert code == 2 and f"between 8 and {MAX_IMAGE_SIDE} pixels" in err
    panel = DatasetPanel()
    qtbot.addWidget(panel)
    panel.image_size.lineEdit().clear()
    qtbot.keyClicks(panel.image_size.lineEdit(), str(MAX_IMAGE_SIDE + 1))
    assert panel.size_error.isVisibleTo(panel)
    assert f"8 to {MAX_IMAGE_SIDE} pixels" in panel.size_error.text()


def test_inspect_a_model_without_conv_or_pooling_layers_says_there_are_no_maps(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="softmax")])
    model.save(tmp_path / "flat.keras")
    Image.new("RGB", (20, 20), (200, 10, 10)).save(tmp_path / "red.png")
    code, out, err = run(["inspect", tmp_path / "flat.keras", tmp_path / "red.png", "--out", tmp_path / "maps"])
    assert code == 0 and out == ""
    assert "no convolution or pooling layer: no activation maps and no heat map" in err
    assert "predicted class " in err
    assert os.listdir(tmp_path / "maps") == []


def _plain_model_file(path: Path, channels: int = 3) -> Path:
    """A classifier saved by a plain Keras script: no Rescaling layer, so cnndesk feeds it 0-1 unless told."""
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((16, 16, channels)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    model.save(path)
    return path


def test_predict_says_which_pixels_a_model_file_gets_and_preprocessing_changes_them(tmp_path):
    import keras

    model_file = _plain_model_file(tmp_path / "plain.keras")
    picture = np.random.default_rng(4).integers(0, 256, (16, 16, 3)).astype(np.uint8)
    Image.fromarray(picture).save(tmp_path / "noise.png")
    model = keras.saving.load_model(model_file)
    answers = {}
    for pixels, fed in ((None, picture / np.float32(255)), ("-1-1", picture / np.float32(127.5) - 1),
                        ("0-255", picture.astype(np.float32))):
        code, out, err = run(["predict", model_file, tmp_path / "noise.png", "--json", "--top-k", 3]
                             + ([f"--preprocessing={pixels}"] if pixels else []))
        assert code == 0, err
        [row] = [json.loads(line) for line in out.splitlines()]
        answers[pixels] = {t["class"]: t["probability"] for t in row["top"]}
        expected = np.asarray(model(fed[None].astype(np.float32)))[0]
        assert [answers[pixels][f"class {i}"] for i in range(3)] == pytest.approx(expected, abs=1e-5)
        assert ("plain.keras: pixels 0-1 (the usual Keras convention" if pixels is None
                else f"plain.keras: pixels {pixels} (--preprocessing; the model's layers suggest 0-1)") in err
    assert answers[None] != answers["-1-1"] != answers["0-255"]


def test_a_preprocessing_the_model_cannot_take_is_a_user_error(tmp_path):
    model_file = _plain_model_file(tmp_path / "grey.keras", channels=1)
    Image.new("L", (16, 16), 90).save(tmp_path / "grey.png")
    code, out, err = run(["inspect", model_file, tmp_path / "grey.png", "--out", tmp_path / "maps",
                          "--preprocessing", "caffe"])
    assert code == 2 and out == ""
    assert err.strip().endswith("caffe preprocessing works on RGB images only (it treats each colour channel "
                                "separately)")
    code, _, err = run(["predict", model_file, tmp_path / "grey.png", "--preprocessing", "bgr"])
    assert code == 2 and "invalid choice: 'bgr'" in err
    code, _, err = run(["predict", model_file, tmp_path / "grey.png", "--preprocessing", "-1-1"])
    assert code == 2 and "write --preprocessing=-1-1 for pixels from -1 to 1" in err


@pytest.mark.slow
def test_evaluate_feeds_the_pixels_preprocessing_names(trained):
    project, _ = trained
    code, out, err = run(["evaluate", project, "--json"])
    assert code == 0, err
    stored = json.loads(out)
    code, out, err = run(["evaluate", project, "--json", "--preprocessing", "0-1"])
    assert code == 0, err
    divided = json.loads(out)  # the model rescales inside: fed 0-1 as well, it sees nearly black images
    assert divided["confusion_matrix"] != stored["confusion_matrix"]


@pytest.mark.slow
def test_the_log_file_gets_every_command_and_verbose_prints_it_too(tmp_path):
    logs = tmp_path / "logs"
    quiet = run_subprocess(["samples", tmp_path / "a", "--per-class", 2], CNNDESK_LOG_DIR=str(logs))
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    loud = run_subprocess(["samples", tmp_path / "b", "--per-class", 2, "--verbose"], CNNDESK_LOG_DIR=str(logs))
    assert loud.returncode == 0, loud.stderr
    assert "cnndesk-cli samples started" in loud.stderr
    refused = run_subprocess(["--verbose", "train", tmp_path / "nowhere", "--project", tmp_path / "p"],
                             CNNDESK_LOG_DIR=str(logs))
    assert refused.returncode == 2
    logged = (logs / "cnndesk.log").read_text(encoding="utf-8")
    assert logged.count("cnndesk-cli samples started") == 2 and "cnndesk-cli train started" in logged
    assert "refused: The folder" in logged


def test_json_lines_are_strict_json_even_for_a_diverged_run(capsys):
    from cnndesk.cli.support import emit_json
    from conftest import strict_json

    emit_json({"event": "epoch", "loss": float("nan"), "val_loss": float("inf"), "history": [1.0, float("-inf")]})
    line = capsys.readouterr().out
    assert strict_json(line) == {"event": "epoch", "loss": None, "val_loss": None, "history": [1.0, None]}


@pytest.mark.parametrize("option, value, says", [
    ("--epochs", "0", "argument --epochs: must be at least 1 "),
    ("--batch-size", "many", "argument --batch-size: must be a whole number of at least 1 (got 'many') "),
    ("--seed", "-1", "argument --seed: must be a whole number from 0 to 4294967295 "),
    ("--seed", "4294967296", "argument --seed: must be a whole number from 0 to 4294967295 "),
    ("--seed", "1.5", "argument --seed: must be a whole number from 0 to 4294967295 (got '1.5') "),
    ("--fine-tune", "-1", "argument --fine-tune: must be 0 or more "),
    ("--fine-tune", "top", "argument --fine-tune: must be a whole number of blocks, 0 or more (got 'top') "),
])
def test_a_count_or_seed_out_of_range_is_one_line_saying_what_it_must_be(option, value, says):
    code, out, err = run(["train", "data", "--project", "p", f"{option}={value}"])
    assert (code, out) == (2, "")
    assert err == f"cnndesk-cli: error: {says}(see cnndesk-cli train --help)\n"


@pytest.mark.slow
def test_train_repeats_records_each_model_as_a_run_and_reports_the_spread(tmp_path):
    from cnndesk.core.model.ensemble import is_ensemble

    root = write_dataset(tmp_path / "d", per_class=10)
    project = tmp_path / "p"
    code, out, err = run(["train", root, "--project", project, "--epochs", 1, "--image-size", 16, "--seed", 4,
                          "--repeats", 2, "--keep", "ensemble", "--json"])
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [d["message"] for d in lines if d["event"] == "note" and d["message"].startswith("Model ")] == [
        "Model 1 of 2 (seed 4)", "Model 2 of 2 (seed 5)"]
    done = lines[-1]
    assert done["event"] == "done" and done["keep"] == "ensemble" and done["seeds"] == [4, 5]
    values = [m["val_accuracy"] for m in done["members"]]
    assert done["spread"]["values"] == values and done["spread"]["mean"] == pytest.approx(sum(values) / 2)
    assert (done["spread"]["min"], done["spread"]["max"]) == (min(values), max(values))
    low, high = done["spread"]["mean_interval"]
    assert low <= done["spread"]["mean"] <= high
    proj, model = open_project(project)
    assert is_ensemble(model) and proj.run == done["kept_run"]
    assert [r.id for r in proj.runs] == [*done["runs"], done["kept_run"]]
    assert [r.settings.seed for r in proj.runs[:2]] == [4, 5] and proj.runs[-1].members == tuple(done["runs"])
    assert all(r.file is not None for r in proj.runs)  # every member's weights kept: each can be restored
    # the ensemble's confidences are measured as one model's; on 6 validation images no temperature is fitted
    assert [r.trust is not None for r in proj.runs] == [False, False, True]
    assert done["not_calibrated"].startswith("only 6 validation images") and done["temperature"] == 1.0
    code, out, _ = run(["runs", project])
    assert code == 0 and "ensemble of 2 · mean " in out and out.count("one of ×2 · mean ") == 2

    code, out, err = run(["train", root, "--project", tmp_path / "q", "--epochs", 1, "--image-size", 16,
                          "--repeats", 2])
    assert code == 0, err
    assert "Validation accuracy of 2 models: mean " in err and "95 % interval" in err
    assert "flatters it" in err and "kept the best of 2 models" in out
    kept = open_project(tmp_path / "q", load_model=False)[0]
    assert [r.trust is not None for r in kept.runs] == [r.id == kept.run for r in kept.runs]  # as one training's
    code, _, err = run(["train", root, "--project", tmp_path / "r", "--keep", "ensemble"])
    assert code == 2 and "--keep goes with --repeats" in err


@pytest.mark.slow
def test_train_on_a_small_folder_takes_the_minimum_of_steps_and_says_so(tiny_dataset, tmp_path):
    # 48 training images at batch 16: 3 steps per epoch, so 1 epoch is 3 steps and 7 make the 20 asked
    code, out, err = run(["train", tiny_dataset, "--project", tmp_path / "p", "--epochs", 1, "--image-size", 16,
                          "--batch-size", 16, "--min-steps", 20])
    assert code == 0, err
    assert ("48 training images make 3 steps per epoch, so 1 epoch would be only 3 steps, too few for a new model "
            "to get past its random start: this run trains 7 epochs (21 steps, at least 20;") in err
    assert [line.split(":")[0] for line in err.splitlines() if line.startswith("epoch ")] == \
        [f"epoch {i}/7" for i in range(1, 8)]
    project, _ = open_project(tmp_path / "p", load_model=False)
    assert len(project.history) == 7 and project.settings.min_steps == 20 and project.settings.epochs == 1
