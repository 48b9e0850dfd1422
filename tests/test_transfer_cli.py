"""``cnndesk-cli train`` with a pretrained preset: weights download with progress, offline message, fine-tuning."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from cnndesk.cli import main
from cnndesk.core.project.store import open_project

from conftest import write_dataset
from pretrained import cache_weights, offline_urlopen


def run(argv) -> tuple[int, str, str]:
    """``main(argv)`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def test_offline_with_an_empty_cache_exits_2_naming_the_file_its_size_and_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setattr("urllib.request.urlopen", offline_urlopen)
    data = write_dataset(tmp_path / "data", per_class=4, size=32)
    code, _, err = run(["train", data, "--project", tmp_path / "p", "--preset", "efficientnetb0", "--epochs", "1"])
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert "efficientnetb0_notop.h5 (16.7 MB)" in last and str(tmp_path / "keras-home" / "models") in last
    assert "--weights-file PATH" in last and "Traceback" not in err
    assert not (tmp_path / "p" / "project.json").exists()


@pytest.mark.slow
def test_a_pretrained_preset_downloads_its_weights_trains_fine_tunes_and_saves(tmp_path, monkeypatch):
    made = cache_weights(tmp_path / "made", "MobileNetV2", (32, 32, 3))
    served = made.read_bytes()

    class Response(io.BytesIO):
        headers = {"Content-Length": str(len(served))}

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.close()

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setattr("urllib.request.urlopen", lambda url, timeout: Response(served))
    data = write_dataset(tmp_path / "data", per_class=6, size=32)
    code, out, err = run(["train", data, "--project", tmp_path / "p", "--preset", "mobilenetv2", "--image-size", "32",
                          "--epochs", "1", "--batch-size", "8", "--fine-tune", "1", "--json"])
    assert code == 0, err
    assert "Downloading the ImageNet weights mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5" in err
    assert "downloaded 100%" in err
    assert (tmp_path / "keras-home" / "models" / made.name).read_bytes() == served
    events = [json.loads(line) for line in out.splitlines()]
    notes = [e["message"] for e in events if e["event"] == "note"]
    assert any("cached backbone features" in n for n in notes) and any("Fine-tuning the top 1 blocks" in n for n in notes)
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2]
    project, _ = open_project(tmp_path / "p", load_model=False)
    assert project.layers[0].kind == "Backbone" and project.layers[0].params["fine_tune"] == 1


def test_ctrl_c_during_the_download_cancels_it_and_leaves_nothing(tmp_path, monkeypatch):
    class Interrupted(io.BytesIO):
        headers = {"Content-Length": "4000000"}

        def read(self, n=-1):
            if self.tell():
                raise KeyboardInterrupt  # what Ctrl-C raises in the main thread while it reads
            return super().read(1000)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.close()

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setattr("urllib.request.urlopen", lambda url, timeout: Interrupted(b"w" * 4000))
    data = write_dataset(tmp_path / "data", per_class=4, size=32)
    code, _, err = run(["train", data, "--project", tmp_path / "p", "--preset", "mobilenetv3small", "--epochs", "1"])
    assert code == 130
    assert "Download cancelled; nothing was kept" in err and "Traceback" not in err
    assert list((tmp_path / "keras-home" / "models").iterdir()) == []
