"""Datasets larger than the memory limit: prepared once into shards on disk, checked, trained from."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnndesk.cli import main
from cnndesk.core.data import disk_cache
from cnndesk.core import file_locks
from cnndesk.core.data.dataset import DatasetConfig, load_dataset
from cnndesk.core.data.pipeline import make_tf_dataset
from cnndesk.core.data.cache_plan import CacheSettings, estimate_bytes, parse_bytes, plan_cache
from cnndesk.core.data.disk_cache import clear_caches
from cnndesk.core.data.shards import ShardedImages
from cnndesk.core.errors import Cancelled, DatasetError
from cnndesk.core.data.images import Preprocessing
from cnndesk.core.project.store import open_project
from cnndesk.core.tasks import ReportingTaskState, TaskState

from conftest import write_dataset

PRE = Preprocessing((32, 32), "rgb")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cache(tmp_path) -> CacheSettings:
    """A limit of 0 bytes: every dataset goes on disk, into a temporary cache folder."""
    return CacheSettings(memory_limit=0, folder=tmp_path / "cache")


def load(folder, cache, **kwargs):
    return load_dataset(folder, DatasetConfig(PRE), cache=cache, **kwargs)


def cache_folders(cache: CacheSettings) -> list[str]:
    """The cache folder's folders (caches and temporary ones); the small lock file of each key is not one."""
    return sorted(p.name for p in cache.root().iterdir() if p.is_dir()) if cache.root().exists() else []


def test_the_estimate_decides_between_memory_and_disk():
    assert estimate_bytes(1000, Preprocessing((96, 96), "rgb")) == 1000 * 96 * 96 * 3
    assert estimate_bytes(1000, Preprocessing((96, 96), "grayscale")) == 1000 * 96 * 96
    fits = plan_cache(1000, PRE, CacheSettings(memory_limit=parse_bytes("4M")))
    assert not fits.on_disk and "kept in memory" in fits.describe()
    too_big = plan_cache(1000, PRE, CacheSettings(memory_limit=parse_bytes("1M")))
    assert too_big.on_disk and "on disk" in too_big.describe()
    assert parse_bytes("1.5GiB") == int(1.5 * 2**30) and parse_bytes("512M") == 512 * 10**6
    with pytest.raises(Exception, match="not a size"):
        parse_bytes("lots")


def test_a_dataset_on_disk_holds_the_same_images_labels_split_and_skipped_files(tmp_path, cache):
    folder = write_dataset(tmp_path / "data", per_class=12, size=32)
    (folder / "left" / "broken.png").write_bytes(b"not an image")
    in_memory = load_dataset(folder, DatasetConfig(PRE))
    on_disk = load(folder, cache)
    assert not in_memory.on_disk and on_disk.on_disk and isinstance(on_disk.images, ShardedImages)
    assert on_disk.skipped == in_memory.skipped and len(on_disk.skipped) == 1
    assert on_disk.paths == in_memory.paths
    np.testing.assert_array_equal(on_disk.labels, in_memory.labels)
    np.testing.assert_array_equal(on_disk.train_index, in_memory.train_index)
    np.testing.assert_array_equal(on_disk.images[np.arange(len(on_disk.labels))], in_memory.images)
    np.testing.assert_array_equal(on_disk.images[5], in_memory.images[5])
    assert on_disk.storage.folder.parent == cache.root() and not on_disk.storage.reused
    assert load(folder, cache).storage.reused  # the second load reads the prepared cache


def test_the_manifest_is_written_only_after_everything_it_vouches_for_is_on_disk(tmp_path, cache, monkeypatch):
    """The manifest marks a cache complete: the shards, the record order and the failures are flushed to disk
    before it is written, and the folder's rename into place is flushed after it."""
    folder = write_dataset(tmp_path / "data", per_class=6, size=32)
    (folder / "left" / "broken.png").write_bytes(b"not an image")  # a failures.json with something in it
    flushed = []  # (device, inode) of each file or folder flushed, in order
    real_fsync = os.fsync

    def fsync(fd):
        st = os.fstat(fd)
        flushed.append((st.st_dev, st.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    made = load(folder, cache).storage.folder
    monkeypatch.undo()

    def first_flush(path):
        st = path.stat()
        assert (st.st_dev, st.st_ino) in flushed, f"{path.name} was never flushed to disk"
        return flushed.index((st.st_dev, st.st_ino))

    manifest = first_flush(made / disk_cache.MANIFEST)
    vouched = [made / disk_cache.RECORD_ORDER, made / "failures.json", *sorted(made.glob("shard-*.bin"))]
    assert len(vouched) > 2 and all(first_flush(p) < manifest for p in vouched)
    assert first_flush(cache.root()) > manifest  # the cache folder's new name, flushed once it is complete


def test_training_batches_stream_every_training_image_once_per_pass_with_its_label(tmp_path, cache):
    folder = write_dataset(tmp_path / "data", per_class=15, size=32)
    data = load(folder, cache)
    reference = load_dataset(folder, DatasetConfig(PRE))
    ds = make_tf_dataset(data.images, data.labels, data.num_classes, 8, training=True, seed=3,
                         index=data.train_index)
    seen = []
    for x, y in ds:
        for image, onehot in zip(x.numpy().astype(np.uint8), y.numpy()):
            matches = np.flatnonzero((reference.images == image).all(axis=(1, 2, 3)))
            assert len(matches) == 1
            assert reference.labels[matches[0]] == onehot.argmax()
            seen.append(int(matches[0]))
    assert sorted(seen) == sorted(data.train_index.tolist())
    assert seen != sorted(seen)  # shuffled
    val = make_tf_dataset(data.images, data.labels, data.num_classes, 8, training=False, index=data.val_index)
    xs = np.concatenate([x.numpy() for x, _ in val]).astype(np.uint8)
    np.testing.assert_array_equal(xs, reference.images[reference.val_index])  # in the order of the index


def test_each_process_reads_its_own_shards_and_together_they_read_every_image_once(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(disk_cache, "SHARD_BYTES", 10 * (32 * 32 * 3 + 4))  # 10 images a shard: 6 shards,
    monkeypatch.setattr(disk_cache, "BLOCK_RECORDS", 5)  # read 5 at a time
    folder = write_dataset(tmp_path / "data", per_class=20, size=32)
    data = load(folder, cache)
    assert len(data.images.cache.shard_files) == 6
    counts = []
    for i in range(2):
        ds = data.images.dataset(data.labels, data.train_index, data.num_classes, 4, training=True, seed=1,
                                 shard_index=i, num_shards=2)
        counts.append(sum(len(x) for x, _ in ds))
        assert counts[-1] == data.images.count(data.train_index, shard_index=i, num_shards=2)
    assert sum(counts) == len(data.train_index) and 0 < counts[0] < len(data.train_index)


@pytest.mark.slow
def test_a_tiny_dataset_forced_on_disk_trains_from_the_cli_into_a_normal_reloadable_project(tmp_path):
    folder = write_dataset(tmp_path / "data", per_class=16, size=32)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["train", str(folder), "--project", str(tmp_path / "proj"), "--epochs", "2", "--image-size", "32",
                     "--batch-size", "8", "--json", "--cache-memory-limit", "0",
                     "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    cache_event = next(e for e in events if e["event"] == "cache")
    assert cache_event["on_disk"] and Path(cache_event["folder"]).parent == tmp_path / "cache"
    assert any(e["event"] == "progress" and e["stage"] == "prepare_cache" for e in events)
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2]
    assert any(e["event"] == "note" and "cache on disk" in e["message"] for e in events)
    project, model = open_project(tmp_path / "proj")
    assert project.class_names == ["centre", "left", "top"] and len(project.history) == 2
    assert model.predict(np.zeros((1, 32, 32, 3), np.float32), verbose=0).shape == (1, 3)

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["clear-cache", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "freed" in out.getvalue() and list((tmp_path / "cache").iterdir()) == []


def _rewrite(path: Path, value: int) -> None:
    Image.fromarray(np.full((32, 32, 3), value, np.uint8)).save(path)
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))


def test_a_changed_or_deleted_source_image_is_noticed_and_the_cache_rebuilt(tmp_path, cache):
    folder = write_dataset(tmp_path / "data", per_class=10, size=32)
    first = load(folder, cache)
    changed = folder / "left" / "left_03.png"
    row = first.paths.index(str(changed))
    assert not (first.images[row] == 200).all()
    _rewrite(changed, 200)
    second = load(folder, cache)
    assert not second.storage.reused and second.storage.folder != first.storage.folder
    assert (second.images[row] == 200).all()
    with pytest.raises(DatasetError, match="read the dataset again"):
        first.images[row]  # the outdated cache is gone: never an image of the new one in its place
    (folder / "top" / "top_01.png").unlink()
    third = load(folder, cache)
    assert not third.storage.reused and len(third.labels) == len(first.labels) - 1
    assert str(folder / "top" / "top_01.png") not in third.paths
    assert len(cache_folders(cache)) == 1  # the outdated caches are gone


def test_a_half_written_cache_is_never_used(tmp_path, cache):
    folder = write_dataset(tmp_path / "data", per_class=10, size=32)
    good = load(folder, cache).storage.folder
    # a kill while writing: a temporary folder of a process that is gone, with shards but no manifest
    left_behind = good.with_name(f"{good.name.rsplit('-', 1)[0]}.tmp-999999999-dead")
    shutil.copytree(good, left_behind)
    (left_behind / "manifest.json").unlink()
    # and the cache itself without its completeness marker
    (good / "manifest.json").unlink()
    again = load(folder, cache)
    assert not again.storage.reused
    rebuilt = again.storage.folder
    assert cache_folders(cache) == [rebuilt.name]  # the abandoned temporary folder and the unmarked cache: gone
    # a shard cut short after the fact is noticed too
    shard = next(rebuilt.glob("shard-*.bin"))
    with open(shard, "r+b") as f:
        f.truncate(shard.stat().st_size - 10)
    assert not load(folder, cache).storage.reused
    reference = load_dataset(folder, DatasetConfig(PRE))
    np.testing.assert_array_equal(load(folder, cache).images[np.arange(len(reference.labels))], reference.images)


class _FullDisk:
    """A shard file that takes a few records, then fails as a full disk does."""

    def __init__(self, real, budget: int):
        self.real, self.budget = real, budget

    def write(self, data):
        self.budget -= len(data)
        if self.budget < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.real.write(data)

    def close(self):
        self.real.close()


def test_a_full_disk_while_preparing_gives_a_clear_message_and_leaves_no_cache(tmp_path, cache, monkeypatch):
    folder = write_dataset(tmp_path / "data", per_class=10, size=32)
    real_open = open
    monkeypatch.setattr(disk_cache, "open", lambda path, mode="r", *a, **k:
                        _FullDisk(real_open(path, mode, *a, **k), 5 * 3076) if "w" in mode and
                        Path(path).name.startswith("shard-") else real_open(path, mode, *a, **k), raising=False)
    with pytest.raises(DatasetError) as info:
        load(folder, cache)
    message = str(info.value)
    assert "is full" in message and str(cache.root()) in message and "Traceback" not in message
    assert cache_folders(cache) == []  # nothing that could look complete, not even a temporary folder
    monkeypatch.undo()
    assert not load(folder, cache).storage.reused  # with room again it prepares from scratch


def test_too_little_free_space_is_refused_before_writing(tmp_path, cache, monkeypatch):
    folder = write_dataset(tmp_path / "data", per_class=10, size=32)
    monkeypatch.setattr(disk_cache.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(100, 100, 1000))
    with pytest.raises(DatasetError, match="has only 1 kB free"):
        load(folder, cache)
    assert cache_folders(cache) == []


def test_cancelling_the_preparation_leaves_nothing_behind(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(disk_cache, "_DECODE_CHUNK", 4)
    folder = write_dataset(tmp_path / "data", per_class=10, size=32)

    class StopAfterFirstChunk(TaskState):
        def on_progress(self, percent):
            self.request_interruption()  # as the Cancel button does, from another thread

    state = StopAfterFirstChunk(min_interval=0)
    with pytest.raises(Cancelled):
        load(folder, cache, state=state)
    assert cache_folders(cache) == []


def test_clear_caches_leaves_a_cache_being_written_by_a_running_process(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(disk_cache, "_DECODE_CHUNK", 4)
    done = load(write_dataset(tmp_path / "done", per_class=6, size=32), cache).storage.folder
    folder = write_dataset(tmp_path / "data", per_class=10, size=32)
    _slow_decoding(monkeypatch, seconds=0.05)
    loaded = []
    writer = threading.Thread(target=lambda: loaded.append(load(folder, cache)))  # flock excludes threads too
    writer.start()
    deadline = time.monotonic() + 60
    while not any(".tmp-" in name for name in cache_folders(cache)) and time.monotonic() < deadline:
        time.sleep(0.01)
    [writing] = [name for name in cache_folders(cache) if ".tmp-" in name]
    assert clear_caches(cache) >= 6 * 3 * 3076  # the finished cache goes
    assert writing in cache_folders(cache) and done.name not in cache_folders(cache)
    writer.join(timeout=120)
    assert len(loaded) == 1 and not loaded[0].storage.reused  # the writer finished its cache undisturbed
    assert cache_folders(cache) == [loaded[0].storage.folder.name]


def test_a_leftover_temporary_folder_goes_whatever_running_program_its_number_names(tmp_path, cache, monkeypatch):
    """A writer holds its cache's lock: a temporary folder whose lock is free is left over, even when the process
    id in its name now belongs to another program (ids are reused). No process is ever signalled to find out:
    on Windows ``os.kill`` ends the process."""
    folder = write_dataset(tmp_path / "data", per_class=6, size=32)
    done = load(folder, cache).storage.folder
    key = done.name.rsplit("-", 1)[0]
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        def left_over(tag: str) -> Path:
            left = cache.root() / f"{key}.tmp-{other.pid}-{tag}"
            left.mkdir()
            (left / "shard-00000.bin").write_bytes(b"x" * 100)
            return left

        def never(*args):
            raise AssertionError("a process was signalled")

        with monkeypatch.context() as patched:
            patched.setattr(os, "kill", never)
            first = left_over("crashed")
            (done / "manifest.json").unlink()  # the cache has to be prepared again: its preparer tidies up
            again = load(folder, cache)
            assert not again.storage.reused and not first.exists()
            second = left_over("killed")
            assert clear_caches(cache) >= 100
            assert not second.exists() and cache_folders(cache) == []
        assert other.poll() is None  # the other program runs on
    finally:
        other.kill()
        other.wait()


# -- processes sharing one cache folder ---------------------------------------------------------------

def _slow_decoding(monkeypatch, seconds: float = 0.01) -> None:
    """Decoding that takes a while, so that two preparers are sure to overlap."""
    from cnndesk.core.data import dataset

    real = dataset.decode_or_reason

    def slow(path, preprocessing):
        time.sleep(seconds)
        return real(path, preprocessing)

    for module in (dataset, disk_cache):  # the in-memory reader and the cache's preparer
        monkeypatch.setattr(module, "decode_or_reason", slow)


def test_two_preparers_of_one_cache_at_once_share_one_cache_and_read_every_image(tmp_path, cache, monkeypatch):
    # Two threads model two processes here: each opens the lock file itself, and flock locks exclude by open file.
    folder = write_dataset(tmp_path / "data", per_class=10, size=32)
    reference = load_dataset(folder, DatasetConfig(PRE))
    _slow_decoding(monkeypatch)
    start = threading.Barrier(2)
    loaded, statuses, errors = {}, {"a": [], "b": []}, []

    def prepare(name):
        start.wait()
        try:
            loaded[name] = load(folder, cache, state=ReportingTaskState(status=statuses[name].append))
        except Exception as e:  # reported below, with the other thread's outcome
            errors.append(e)

    threads = [threading.Thread(target=prepare, args=(name,)) for name in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(loaded) == 2
    # one prepared it; the other waited for it, saying so, and then read that one cache
    assert sorted(d.storage.reused for d in loaded.values()) == [False, True]
    waiter = next(name for name, d in loaded.items() if d.storage.reused)
    assert disk_cache.WAITING in statuses[waiter]
    assert len({d.storage.folder for d in loaded.values()}) == 1
    assert load(folder, cache).storage.reused  # a later reader keeps it: nothing of theirs is deleted
    assert len(cache_folders(cache)) == 1
    everything = np.arange(len(reference.labels))
    for data in loaded.values():
        np.testing.assert_array_equal(data.images[everything], reference.images)


def test_waiting_for_another_preparer_can_be_cancelled(tmp_path, cache):
    folder = write_dataset(tmp_path / "data", per_class=4, size=32)
    cache.root().mkdir(parents=True)
    other = file_locks.exclusive(cache.root() / f"{disk_cache.cache_key(folder, PRE)}.lock")
    assert file_locks.take(other)  # another process preparing the same cache, and taking its time

    class CancelWhileWaiting(TaskState):
        def set_status(self, text):
            if text == disk_cache.WAITING:
                self.request_interruption()  # the user presses Cancel

    try:
        with pytest.raises(Cancelled):
            load(folder, cache, state=CancelWhileWaiting())
    finally:
        other.release()
    assert cache_folders(cache) == []
    assert not load(folder, cache).storage.reused  # once the other is done, this one prepares


READ_LATER = """
import sys
from pathlib import Path
import numpy as np
from cnndesk.core.data.dataset import DatasetConfig, load_dataset
from cnndesk.core.data.disk_cache import CacheSettings
from cnndesk.core.data.images import Preprocessing
data = load_dataset(sys.argv[1], DatasetConfig(Preprocessing((32, 32), "rgb")),
                    cache=CacheSettings(memory_limit=0, folder=Path(sys.argv[2])))
print(data.storage.folder, flush=True)
sys.stdin.readline()  # until the test has tried to delete the cache
np.save(sys.argv[3], data.images[np.arange(len(data.labels))])
"""


def test_a_cache_another_process_reads_is_neither_cleared_nor_replaced_under_it(tmp_path, cache):
    folder = write_dataset(tmp_path / "data", per_class=6, size=32)
    reference = load_dataset(folder, DatasetConfig(PRE))
    reader = subprocess.Popen([sys.executable, "-c", READ_LATER, str(folder), str(cache.root()),
                               str(tmp_path / "read.npy")], env=dict(os.environ, PYTHONPATH=str(REPO)),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    in_use = Path(reader.stdout.readline().strip())
    assert in_use.parent == cache.root(), reader.stderr.read()
    clear_caches(cache)
    _rewrite(folder / "left" / "left_02.png", 90)  # the dataset changes: this process makes a new cache
    assert not load(folder, cache).storage.reused
    assert in_use.is_dir() and len(cache_folders(cache)) == 2  # the outdated one stays while it is read
    _, err = reader.communicate("go\n", timeout=120)
    assert reader.returncode == 0, err[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "read.npy"), reference.images)  # every image, as it was
    assert load(folder, cache).storage.reused and cache_folders(cache) == [load(folder, cache).storage.folder.name]


def test_a_lock_file_deleted_while_another_waits_for_it_never_gives_two_holders(tmp_path):
    path = tmp_path / "key.lock"
    first, second, third = (file_locks.exclusive(path) for _ in range(3))
    assert file_locks.take(first)
    waiting = threading.Event()
    waiter = threading.Thread(target=file_locks.take, args=(second,), kwargs={"on_wait": waiting.set})
    waiter.start()
    assert waiting.wait(30)
    os.unlink(path)  # as remove_unused does, holding the lock: the waiter waits on a file that is gone
    first.release()
    waiter.join(30)
    assert not waiter.is_alive() and second.is_locked and path.exists()  # it noticed, and locked the file there now
    assert not file_locks.take(third, wait=False)  # that one is held: a third must wait
    with pytest.raises(Cancelled):
        file_locks.take(third, cancelled=lambda: True)
    assert not file_locks.remove_unused(path) and path.exists()  # a held lock file is not deleted
    second.release()
    assert file_locks.remove_unused(path) and not path.exists()
    assert file_locks.take(third)
    third.release()


def test_evaluating_an_on_disk_dataset_reads_its_validation_split_a_chunk_at_a_time(tmp_path, cache, monkeypatch):
    from cnndesk.core.model import inspection
    from cnndesk.core.model.architecture import build_model, preset
    from cnndesk.core.model.inspection import Inspector

    folder = write_dataset(tmp_path / "data", per_class=15, size=32)
    on_disk, in_memory = load(folder, cache), load_dataset(folder, DatasetConfig(PRE))
    ins = Inspector(build_model(preset("seed"), PRE.input_shape, on_disk.num_classes), on_disk.class_names, PRE)
    monkeypatch.setattr(inspection, "EVALUATION_CHUNK", 4)
    asked = []
    read = ShardedImages.__getitem__
    monkeypatch.setattr(ShardedImages, "__getitem__", lambda self, rows: asked.append(len(np.atleast_1d(
        np.arange(len(self))[rows]))) or read(self, rows))
    rows = on_disk.rows(on_disk.val_index)
    assert asked == []  # nothing read until evaluated
    ev = ins.evaluate(rows, on_disk.labels[on_disk.val_index])
    assert max(asked) <= 4 and sum(asked) == len(on_disk.val_index)  # never the whole split at once
    x, y = in_memory.subset(in_memory.val_index)
    expected = ins.evaluate(x, y)
    np.testing.assert_array_equal(ev.confusion, expected.confusion)
    np.testing.assert_array_equal(ev.predicted, expected.predicted)


@pytest.mark.slow
def test_scoring_likely_mislabelled_images_of_an_on_disk_dataset_reads_it_a_chunk_at_a_time(tmp_path, cache,
                                                                                            monkeypatch):
    """The validation split (by the current model) and each held-out fold (by its retrain) are read
    ``EVALUATION_CHUNK`` images at a time, never whole, and each chunk alone becomes float32."""
    from cnndesk.core.model import inspection
    from cnndesk.core.model.architecture import build_model, preset, TrainingSettings
    from cnndesk.core.model.inspection import Inspector
    from cnndesk.ui.engine_worker import EngineWorker

    folder = write_dataset(tmp_path / "data", per_class=15, size=32)
    data = load(folder, cache)
    worker = EngineWorker()
    worker.inspector = Inspector(build_model(preset("seed"), PRE.input_shape, data.num_classes), data.class_names,
                                 PRE)
    monkeypatch.setattr(inspection, "EVALUATION_CHUNK", 4)
    asked = []
    read = ShardedImages.__getitem__
    monkeypatch.setattr(ShardedImages, "__getitem__", lambda self, rows: asked.append(len(np.atleast_1d(
        np.arange(len(self))[rows]))) or read(self, rows))
    scores = worker.score_labels(data, preset("seed"), TrainingSettings(epochs=1, batch_size=8), folds=2, epochs=1,
                                 task=TaskState())
    assert sorted(scores.rows.tolist()) == sorted(data.val_index.tolist() + data.train_index.tolist())
    assert asked and max(asked) <= 4  # never a whole split or fold at once
    assert scores.probabilities.shape == (len(data.labels), data.num_classes)
