"""Training across processes: ``cnndesk-cli train --distributed`` (Keras on JAX), run as two local processes.

The processes are real ``cnndesk-cli`` commands joined through a coordinator on 127.0.0.1, as on a cluster
where every machine runs the same command; the model they save is opened under TensorFlow, as the app
opens it, and must predict as it does under JAX.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cnndesk.core.data import disk_cache
from cnndesk.core.data.dataset import DatasetConfig, load_dataset
from cnndesk.core.data.pipeline import make_tf_dataset
from cnndesk.core.data.cache_plan import CacheSettings
from cnndesk.core.distributed import (
    cluster_from_env, distributed_note, DistributedError, process_rows, process_share,
)
from cnndesk.core.data.images import Preprocessing

from conftest import write_dataset

pytestmark = pytest.mark.distributed

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_env(port: int, process_id: int, processes: int = 2) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KERAS_", "SLURM_", "OMPI_"))}
    return dict(env, PYTHONPATH=str(REPO), KERAS_DISTRIBUTION_JOB_ADDRESSES=f"127.0.0.1:{port}",
                KERAS_DISTRIBUTION_NUM_PROCESSES=str(processes), KERAS_DISTRIBUTION_PROCESS_ID=str(process_id))


def start_process(port: int, process_id: int, dataset: Path, project: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "cnndesk.cli", "train", str(dataset), "--project", str(project), "--epochs", "1",
               "--image-size", "32", "--batch-size", "8", "--distributed", "--json", "--min-steps", "0", *extra]
    return subprocess.Popen(command, cwd=REPO, env=run_env(port, process_id), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


# -- the pieces, without a run ---------------------------------------------------------------

def test_each_process_gets_an_equal_share_of_whole_batches_and_no_image_twice():
    rows = np.arange(1000, 1103)  # 103 rows, 2 processes of 8: 6 steps of 16, 7 rows left out
    shares = [process_rows(rows, pid, 2, 8, seed=4) for pid in (0, 1)]
    assert [len(s) for s in shares] == [48, 48]
    assert not set(shares[0]) & set(shares[1]) and set(shares[0]) | set(shares[1]) <= set(rows)
    assert np.array_equal(process_rows(rows, 1, 2, 8, seed=4), shares[1])  # alike wherever it is computed
    assert [len(process_rows(rows, pid, 3, 5, seed=1)) for pid in range(3)] == [30, 30, 30]
    assert len(process_rows(rows[:10], 0, 2, 8, seed=1)) == 0  # less than one global batch


RECORD = 32 * 32 * 3 + 4  # bytes of one 32×32 colour image's record in the on-disk cache


def shard_of_each_row(data) -> np.ndarray:
    """Which shard holds each row's image, from the cache's own record list and shard sizes."""
    cache = data.images.cache
    ends = np.cumsum(cache.shard_records)
    record = {int(f): i for i, f in enumerate(cache.order)}  # file number -> record number
    return np.array([np.searchsorted(ends, record[int(f)], side="right") for f in data.images.rows_to_files])


def test_with_an_on_disk_cache_each_process_trains_on_whole_batches_from_its_own_shards_only(tmp_path,
                                                                                             monkeypatch):
    monkeypatch.setattr(disk_cache, "SHARD_BYTES", 10 * RECORD)  # 10 images a shard: 6 shards
    monkeypatch.setattr(disk_cache, "BLOCK_RECORDS", 5)
    folder = write_dataset(tmp_path / "data", per_class=20, size=32)
    config = DatasetConfig(Preprocessing((32, 32), "rgb"))
    data = load_dataset(folder, config, cache=CacheSettings(memory_limit=0, folder=tmp_path / "cache"))
    in_memory = load_dataset(folder, config)
    assert data.images.shard_count == 6 and len(data.train_index) == 48
    shard = shard_of_each_row(data)
    counts = [int(np.isin(shard[data.train_index], [p, p + 3]).sum()) for p in range(3)]
    # which images a shard holds depends on the folder's path: leave out enough of process 0's that it has fewest
    fewer = max(counts[0] - min(counts[1:]) + 1, 1)
    train = np.setdiff1d(data.train_index, data.train_index[np.isin(shard[data.train_index], [0, 3])][:fewer])
    data = dataclasses.replace(data, train_index=train)
    assert len(train) == 48 - fewer

    shares = [process_share(data, pid, 3, 2, seed=5) for pid in range(3)]
    size = (counts[0] - fewer) // 2 * 2  # the smallest count, in whole batches of 2
    assert [len(s.train_index) for s in shares] == [size] * 3  # the same whole batches everywhere
    assert all(s.left_out == len(train) - 3 * size > 0 for s in shares)
    rows = [set(s.train_index.tolist()) for s in shares]
    assert not rows[0] & rows[1] and not rows[0] & rows[2] and not rows[1] & rows[2]
    for pid, share in enumerate(shares):
        assert set(shard[share.train_index]) <= {pid, pid + 3} and share.shards_read == 2
        assert "from its 2 of the 6 shards of the on-disk cache" in distributed_note(3, 3, 2, share, 12)

    # its training pipeline opens no other shard: with the others' shards gone it still reads its images
    shard_files = [Path(f) for f in data.images.cache.shard_files]
    for pid, share in enumerate(shares):
        others = [f for k, f in enumerate(shard_files) if k % 3 != pid]
        for f in others:
            f.rename(f.with_suffix(".away"))
        try:
            ds = make_tf_dataset(share.images, share.labels, share.num_classes, 2, training=True, seed=1,
                                 index=share.train_index)
            seen = np.concatenate([x.numpy() for x, _ in ds]).astype(np.uint8)
        finally:
            for f in others:
                f.with_suffix(".away").rename(f)
        expected = in_memory.images[share.train_index]
        assert len(seen) == len(expected)
        assert sorted(map(bytes, seen)) == sorted(map(bytes, expected))
        np.testing.assert_array_equal(share.images[share.val_index], in_memory.images[share.val_index])

    # more processes than shards: rows dealt out as in memory, each process streaming every shard
    many = process_share(data, 1, 7, 2, seed=5)
    assert np.array_equal(many.train_index, process_rows(train, 1, 7, 2, seed=5))
    assert many.images is data.images and not many.shards_read
    assert "the on-disk cache has 6 shards, fewer than the 7 processes, so every process reads the whole cache" \
        in distributed_note(7, 7, 2, many, 12)
    # a dataset in memory: exactly the rows dealt out, and nothing about shards
    kept = process_share(in_memory, 2, 3, 2, seed=5)
    assert np.array_equal(kept.train_index, process_rows(in_memory.train_index, 2, 3, 2, seed=5))
    assert kept.images is in_memory.images and "shard" not in distributed_note(3, 3, 2, kept, 12)


def test_the_run_is_read_from_the_keras_variables_and_mistakes_are_named():
    cluster = cluster_from_env({"KERAS_DISTRIBUTION_JOB_ADDRESSES": "10.0.0.1:1234,10.0.0.2:1234",
                                "KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": "1"})
    assert (cluster.coordinator, cluster.num_processes, cluster.process_id) == ("10.0.0.1:1234", 2, 1)
    assert cluster_from_env({}).coordinator is None  # left to JAX's detection of Slurm or Open MPI
    with pytest.raises(DistributedError, match="names 2 processes but KERAS_DISTRIBUTION_NUM_PROCESSES is 3"):
        cluster_from_env({"KERAS_DISTRIBUTION_JOB_ADDRESSES": "a:1,b:1", "KERAS_DISTRIBUTION_NUM_PROCESSES": "3"})
    with pytest.raises(DistributedError, match="must be from 0 to 1"):
        cluster_from_env({"KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": "2"})


def test_the_command_line_reaches_the_jax_child_without_importing_keras():
    # KERAS_BACKEND is read once, when Keras is first imported: the command that starts the JAX child must not
    check = ("import sys; import cnndesk.cli, cnndesk.cli.launcher, cnndesk.cli.distributed_process; "
             "print(sorted(m for m in ('keras', 'jax', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", check], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# -- two processes -----------------------------------------------------------------------------

PREDICT = """
import json, sys
import keras, numpy as np
from cnndesk.core.data.dataset import DatasetConfig, load_dataset
from cnndesk.core.project.store import open_project
project, model = open_project(sys.argv[1])
data = load_dataset(sys.argv[2], project.dataset)
images = data.images[:12].astype("float32")
print(json.dumps({"backend": keras.backend.backend(), "probabilities": np.asarray(model.predict(images, verbose=0)).tolist()}))
"""


def predict_under(backend: str, project: Path, dataset: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen([sys.executable, "-c", PREDICT, str(project), str(dataset)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def answer(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def test_two_local_processes_train_one_model_that_the_app_opens_and_that_predicts_alike(tmp_path, sample_dir):
    project = tmp_path / "together"
    port = free_port()
    runs = [start_process(port, pid, sample_dir, project) for pid in (0, 1)]
    results = [answer(p) for p in runs]
    for code, _, err in results:
        assert code == 0, err[-3000:]
    events = [json.loads(line) for line in results[0][1].splitlines()]
    events = [e for e in events if e["event"] != "cache"]  # where the decoded images are kept: not this test's
    assert results[1][1] == ""  # only process 0 reports
    assert events[0]["event"] == "note" and events[0]["message"].startswith(
        "Training on 2 processes with 2 devices: each step takes a global batch of 16 images, 8 per device")
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1]
    done = events[-1]
    assert done["event"] == "done" and Path(done["project"]).resolve() == project.resolve()
    assert sorted(p.name for p in project.iterdir()) == ["project.json", "runs", "versions"]  # one writer, one save
    assert len(list((project / "versions").iterdir())) == 1

    checks = {backend: predict_under(backend, project, sample_dir) for backend in ("tensorflow", "jax")}
    outputs = {}
    for backend, proc in checks.items():
        code, out, err = answer(proc)
        assert code == 0, err[-3000:]
        outputs[backend] = json.loads(out.strip().splitlines()[-1])
        assert outputs[backend]["backend"] == backend
    tf_p, jax_p = (np.array(outputs[b]["probabilities"]) for b in ("tensorflow", "jax"))
    assert tf_p.shape == (12, 4) and np.allclose(tf_p.sum(axis=1), 1, atol=1e-5)
    assert np.abs(tf_p - jax_p).max() < 1e-5


def test_two_local_processes_train_from_their_own_shards_of_one_on_disk_cache(tmp_path, sample_dir, monkeypatch):
    from cnndesk.core.project.store import open_project

    # the run's cache folder holds the sample's cache in small shards, as an earlier reading left it; both
    # processes find it (one after the other: preparing and choosing a cache is locked) and share it
    monkeypatch.setattr(disk_cache, "SHARD_BYTES", 20 * RECORD)
    monkeypatch.setattr(disk_cache, "BLOCK_RECORDS", 5)
    cache = tmp_path / "cache"
    shards = load_dataset(sample_dir, DatasetConfig(Preprocessing((32, 32), "rgb")),
                          cache=CacheSettings(memory_limit=0, folder=cache)).images.shard_count
    assert shards == 6
    project = tmp_path / "from-disk"
    port = free_port()
    runs = [start_process(port, pid, sample_dir, project, "--cache-memory-limit", "0", "--cache-dir", str(cache))
            for pid in (0, 1)]
    results = [answer(p) for p in runs]
    for code, _, err in results:
        assert code == 0, err[-3000:]
    events = [json.loads(line) for line in results[0][1].splitlines()]
    where = next(e for e in events if e["event"] == "cache")
    assert where["on_disk"] and where["reused"] and where["shards"] == shards
    note = next(e for e in events if e["event"] == "note")["message"]
    assert "from its 3 of the 6 shards of the on-disk cache" in note, note
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1] and events[-1]["event"] == "done"
    opened, model = open_project(project)
    assert len(opened.history) == 1 and model.predict(np.zeros((1, 32, 32, 3), np.float32), verbose=0).shape == (1, 4)
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 1  # one cache, shared


def test_when_a_process_dies_the_other_stops_with_one_clear_line(tmp_path, sample_dir):
    port = free_port()
    survivor = start_process(port, 0, sample_dir, tmp_path / "p", "--peer-timeout", "5")
    victim = start_process(port, 1, sample_dir, tmp_path / "p", "--peer-timeout", "5")
    first = survivor.stdout.readline()  # the run's first note: both processes have joined
    while first.startswith('{"event": "cache"'):  # where the decoded images are kept comes before it
        first = survivor.stdout.readline()
    assert first.startswith('{"event": "note"'), survivor.stderr.read()[-3000:]
    os.killpg(victim.pid, signal.SIGKILL)  # the command and its JAX child, as a machine that goes down
    victim.wait()
    code, _, err = answer(survivor, timeout=240)  # JAX's own peer timeout would be 100 s, and without one: forever
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("cnndesk-cli: error: the distributed run stopped: another process of it died or "
                                "stopped answering for 5 s")
    assert "Traceback" not in err and "Check failure" not in err and not any(l.lstrip().startswith("@ 0x")
                                                                              for l in lines)
    assert not (tmp_path / "p" / "project.json").exists()


def test_jax_names_for_the_run_are_read_when_the_keras_ones_are_not_set():
    cluster = cluster_from_env({"JAX_COORDINATOR_ADDRESS": "job-node-0-0.job:6666", "JAX_NUM_PROCESSES": "4",
                                "JAX_PROCESS_ID": "3", "KERAS_DISTRIBUTION_PROCESS_ID": "2"})
    assert (cluster.coordinator, cluster.num_processes, cluster.process_id) == ("job-node-0-0.job:6666", 4, 2)


def test_a_process_whose_peers_never_come_gives_up_after_the_join_timeout(tmp_path, sample_dir):
    alone = start_process(free_port(), 0, sample_dir, tmp_path / "p", "--join-timeout", "3")
    code, out, err = answer(alone, timeout=240)  # without a timeout JAX would wait 300 s
    assert code == 1 and out == ""
    assert err.strip().splitlines()[-1] == (
        "cnndesk-cli: error: not every process of the distributed run joined within 3 s: are they all started, with "
        "the same coordinator address and number of processes? Nothing was saved by this run.")
    assert "Traceback" not in err and "Check failure" not in err


def test_stopping_the_command_stops_its_jax_child_too(tmp_path, sample_dir):
    # as a scheduler cancels a job: SIGTERM to the command the user started, which must not leave its child behind
    waiting = start_process(free_port(), 0, sample_dir, tmp_path / "p", "--join-timeout", "200")
    children = Path(f"/proc/{waiting.pid}/task/{waiting.pid}/children")
    pids = []
    while not pids and waiting.poll() is None:  # the child is started at once; it then waits for its peer
        pids = children.read_text().split()
        time.sleep(0.05)
    assert pids, waiting.stderr.read()
    child = int(pids[0])
    waiting.send_signal(signal.SIGTERM)
    code, out, err = answer(waiting, timeout=120)
    assert code == 130 and err.strip().splitlines()[-1] == "cnndesk-cli: interrupted"
    assert not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text()


def test_without_a_run_to_join_the_command_says_what_to_set(tmp_path, sample_dir):
    env = {k: v for k, v in run_env(0, 0).items() if not k.startswith("KERAS_DISTRIBUTION_")}
    proc = subprocess.run([sys.executable, "-m", "cnndesk.cli", "train", str(sample_dir), "--project",
                           str(tmp_path / "p"), "--distributed"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnndesk-cli: error: No distributed run to join")
    assert "KERAS_DISTRIBUTION_JOB_ADDRESSES (the coordinator's host:port)" in lines[0] and "srun" in lines[0]


def test_a_device_or_a_missing_jax_is_refused_before_anything_starts(tmp_path, sample_dir, capsys, monkeypatch):
    import importlib.util

    from cnndesk.cli import main

    command = ["train", str(sample_dir), "--project", str(tmp_path / "p"), "--distributed"]
    assert main(command + ["--device", "gpu:0"]) == 2
    assert capsys.readouterr().err.strip() == ("cnndesk-cli: error: --distributed trains on every device JAX finds on "
                                               "each machine: leave out --device.")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "jax" else real(name, *a))
    assert main(command) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cnndesk-cli: error: --distributed needs JAX: install the extra with pip install")
    assert not (tmp_path / "p").exists()


JOIN = """
from cnndesk.core.distributed import cluster_from_env, join
print(*join(cluster_from_env(), 60, 10))
"""


def free_port_above(lowest: int) -> int:
    for port in range(lowest, 65536):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port above {lowest}")


@pytest.mark.parametrize("launcher", ["slurm", "openmpi"])
def test_a_run_started_by_slurm_or_open_mpi_is_joined_from_their_variables_alone(launcher):
    # JAX derives the coordinator's port from the job id, in 61440..65535: a job id whose port is free here
    job = free_port_above(61440 + 1000) - 61440
    procs = []
    for pid in (0, 1):
        env = {k: v for k, v in run_env(0, pid).items() if not k.startswith("KERAS_DISTRIBUTION_")}
        if launcher == "slurm":  # what srun sets for 2 tasks on one node
            env.update(SLURM_JOB_ID=str(job), SLURM_STEP_NODELIST="localhost", SLURM_NTASKS="2",
                       SLURM_PROCID=str(pid), SLURM_LOCALID=str(pid))
        else:  # what mpirun (Open MPI 4) sets
            env.update(OMPI_MCA_orte_hnp_uri=f"{job * 4096}.0;tcp://127.0.0.1:4000", OMPI_COMM_WORLD_SIZE="2",
                       OMPI_COMM_WORLD_RANK=str(pid), OMPI_COMM_WORLD_LOCAL_RANK=str(pid))
        procs.append(subprocess.Popen([sys.executable, "-c", JOIN], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    for pid, proc in enumerate(procs):
        code, out, err = answer(proc, timeout=120)
        assert code == 0, err[-2000:]
        assert out.split() == [str(pid), "2"]  # (this process's id, number of processes)
