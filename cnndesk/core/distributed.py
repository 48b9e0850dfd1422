"""Training across processes and machines: the Keras distribution API on the JAX backend.

Every process of a run executes the same program: it joins the others
(:func:`join`), reads the whole dataset, keeps only its own share of the
training and validation images (:func:`process_share`; with an on-disk
cache, the training images of its own shards), trains with
``keras.distribution.DataParallel`` and saves, after which only process 0's
project is kept. The facts this relies on, and the traps it avoids, are in
docs/distributed.md; in short:

- ``KERAS_BACKEND=jax`` must be set before Keras is first imported, so this
  module imports Keras (and JAX) only inside its functions, and the CLI runs
  it in a fresh child process (``cnndesk.cli.distributed_process``).
- Every process must take the same number of steps with batches of the same
  size, or the run hangs (steps) or silently diverges (sizes): each share is
  cut to whole global batches, the rest of the split left out.
- A process that dies leaves the others blocked in a collective; JAX ends
  them (from native code) once the dead one missed its heartbeats for
  ``peer_timeout_s``, which :func:`join` sets instead of JAX's 100 s.
- ``model.save`` under the distribution hangs or writes a partial file on
  process 0 alone: the distribution is lifted first, and every process saves
  (process 0 into the project, the others into a scratch folder they delete).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from .data.dataset import LoadedDataset
from .errors import UserError

#: seconds a process may miss its heartbeats before the others give up on it (JAX's own default is 100)
DEFAULT_PEER_TIMEOUT_S = 60
#: seconds to wait for every process to join the run
DEFAULT_JOIN_TIMEOUT_S = 300

ENV_ADDRESSES = "KERAS_DISTRIBUTION_JOB_ADDRESSES"
ENV_COUNT = "KERAS_DISTRIBUTION_NUM_PROCESSES"
ENV_ID = "KERAS_DISTRIBUTION_PROCESS_ID"
#: JAX's own names for the same, as some launchers (Kubeflow Trainer's JAX runtime) set them; the Keras ones win
JAX_ENV = {ENV_ADDRESSES: "JAX_COORDINATOR_ADDRESS", ENV_COUNT: "JAX_NUM_PROCESSES", ENV_ID: "JAX_PROCESS_ID"}


class DistributedError(UserError):
    """The run could not start or continue across its processes (one sentence, for the terminal)."""


@dataclass(frozen=True)
class Cluster:
    """Where the run's coordinator is and which process this is; None where JAX should detect it (Slurm, Open MPI)."""

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None


def cluster_from_env(environ: Mapping[str, str] | None = None) -> Cluster:
    """Read the variables ``keras.distribution.initialize()`` reads.

    ``KERAS_DISTRIBUTION_JOB_ADDRESSES`` is the coordinator's ``host:port`` or a
    comma-separated list of every process's address, whose first is the
    coordinator. Where a Keras variable is unset, JAX's name for it
    (``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``) is
    read; what neither sets stays None, for JAX's cluster detection.

    Raises:
        DistributedError: a variable that is not a number, or addresses that disagree with the count.
    """
    environ = os.environ if environ is None else environ
    environ = {name: environ.get(name) or environ.get(JAX_ENV[name], "") for name in JAX_ENV}
    addresses = [a.strip() for a in environ.get(ENV_ADDRESSES, "").split(",") if a.strip()]
    try:
        count = int(environ[ENV_COUNT]) if environ.get(ENV_COUNT, "").strip() else None
        pid = int(environ[ENV_ID]) if environ.get(ENV_ID, "").strip() else None
    except ValueError:
        raise DistributedError(f"{ENV_COUNT} and {ENV_ID} must be whole numbers (got {environ.get(ENV_COUNT)!r} and "
                               f"{environ.get(ENV_ID)!r}).") from None
    if len(addresses) > 1 and count is not None and count != len(addresses):
        raise DistributedError(f"{ENV_ADDRESSES} names {len(addresses)} processes but {ENV_COUNT} is {count}.")
    if count is not None and pid is not None and not 0 <= pid < count:
        raise DistributedError(f"{ENV_ID} must be from 0 to {count - 1} (got {pid}).")
    return Cluster(addresses[0] if addresses else None, count, pid)


def join(cluster: Cluster, join_timeout_s: int = DEFAULT_JOIN_TIMEOUT_S,
         peer_timeout_s: int = DEFAULT_PEER_TIMEOUT_S) -> tuple[int, int]:
    """Join the run's other processes; returns (this process's id, number of processes).

    This is what ``keras.distribution.initialize()`` does on the JAX backend,
    with the timeouts it does not pass: ``join_timeout_s`` for every process to
    arrive, ``peer_timeout_s`` for one that stops sending heartbeats.

    Raises:
        DistributedError: no cluster given or detected, or the others did not arrive in time.
    """
    import jax

    try:
        jax.distributed.initialize(coordinator_address=cluster.coordinator, num_processes=cluster.num_processes,
                                   process_id=cluster.process_id, initialization_timeout=int(join_timeout_s),
                                   heartbeat_timeout_seconds=int(peer_timeout_s))
    except ValueError as e:  # nothing set and nothing detected
        raise DistributedError(
            f"No distributed run to join ({e}). Set {ENV_ADDRESSES} (the coordinator's host:port), {ENV_COUNT} and "
            f"{ENV_ID} on every process, or start the processes with Slurm's srun or Open MPI's mpirun.") from None
    except Exception as e:  # the coordinator cannot be reached, or not every process arrived
        raise DistributedError(f"Could not join the distributed run at {cluster.coordinator or 'the detected cluster'} "
                               f"within {join_timeout_s} s: {_first_line(e)}. Are all "
                               f"{cluster.num_processes or 'the'} processes started, with the same coordinator "
                               "address?") from None
    return jax.process_index(), jax.process_count()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def process_rows(rows: np.ndarray, process_id: int, num_processes: int, process_batch: int, seed: int) -> np.ndarray:
    """The rows this process trains on: an equal share of whole batches, the same cut on every process.

    ``rows`` are shuffled with ``seed`` (alike on every process, so the shares
    do not overlap) and dealt out in turn; each share is cut to whole batches of
    ``process_batch`` so that every process takes the same number of equal
    steps. What is left over (fewer than one global batch) is not used.
    """
    rows = np.asarray(rows)
    steps = len(rows) // (process_batch * num_processes)
    order = np.random.default_rng(seed).permutation(rows)
    return np.sort(order[process_id::num_processes][:steps * process_batch])


#: a process trains on its own shards only while that leaves out at most this part of the training split
MAX_SHARD_LEFT_OUT = 0.25


def shard_rows(images, rows: np.ndarray, process_id: int, num_processes: int, process_batch: int,
               seed: int) -> np.ndarray:
    """The rows this process trains on when it reads only its own shards ``process_id::num_processes``.

    ``images`` is an on-disk cache's ``ShardedImages``. Each process counts
    how many of ``rows`` every process's shards hold (the cache's record list
    says, so all processes agree without asking each other); the smallest
    count, cut to whole batches of ``process_batch``, is every process's
    share. This process takes that many of the ``rows`` in its own shards,
    chosen with ``seed``; the rest of them are left out.
    """
    counts = [images.count(rows, p, num_processes) for p in range(num_processes)]
    take = min(counts) // process_batch * process_batch
    own = images.rows_in_shards(rows, process_id, num_processes)
    return np.sort(np.random.default_rng(seed).permutation(own)[:take])


@dataclass(eq=False)  # equal only to itself, as a LoadedDataset
class ProcessShare(LoadedDataset):
    """A process's share of a loaded dataset: its own training and validation rows of the same cache.

    Class weights stay those of the whole training split, so every process
    weights the loss alike. With an on-disk cache, ``images`` streams only the
    process's own shards in training (``shards_read`` of ``shards``), unless
    ``reads_all_because`` says why every process reads every shard.
    """

    whole: LoadedDataset | None = None
    processes: int = 1
    left_out: int = 0  # training images no process uses (fewer than one global batch, or shards' differences)
    shards: int = 0  # shards of the on-disk cache (0: in memory)
    shards_read: int = 0  # of them, those this process streams its training images from (0: rows dealt out)
    reads_all_because: str = ""  # on disk but rows dealt out: why, as a clause for the log

    def validation_size(self) -> int:
        return len(self.val_index) * self.processes  # every process validates on as many

    def class_weight(self) -> dict[int, float]:
        return self.whole.class_weight() if self.whole is not None else super().class_weight()


def process_share(data: LoadedDataset, process_id: int, num_processes: int, process_batch: int,
                  seed: int) -> ProcessShare:
    """This process's share of ``data``; the one place that decides which images a process reads.

    Raises:
        DistributedError: the training split is smaller than one global batch.
    """
    global_batch = process_batch * num_processes
    if len(data.train_index) < global_batch:
        raise DistributedError(
            f"The training split has {len(data.train_index)} images, fewer than one global batch of {global_batch} "
            f"({process_batch} per process on {num_processes} processes): lower the batch size or add images.")
    train = process_rows(data.train_index, process_id, num_processes, process_batch, seed)
    val = process_rows(data.val_index, process_id, num_processes, process_batch, seed + 1)
    fields = {f.name: getattr(data, f.name) for f in dataclasses.fields(LoadedDataset)}
    disk = {}
    if data.on_disk:
        disk = _on_disk_share(data, process_id, num_processes, process_batch, seed)
        if "images" in disk:
            train = disk.pop("train_index")
            fields["images"] = disk.pop("images")
    fields.update(train_index=train, val_index=val)
    return ProcessShare(**fields, whole=data, processes=num_processes,
                        left_out=len(data.train_index) - len(train) * num_processes, **disk)


def _on_disk_share(data: LoadedDataset, process_id: int, num_processes: int, process_batch: int,
                   seed: int) -> dict:
    """The training rows and images of a process that reads only its own shards, or why it cannot.

    Returns ``ProcessShare`` fields: ``shards`` and, when the own shards give
    every process at least one batch and leave out at most
    ``MAX_SHARD_LEFT_OUT`` of the split, ``train_index``, ``images`` (the
    view that streams only these shards) and ``shards_read``; otherwise
    ``reads_all_because``, and the rows are dealt out as for a cache in memory.
    """
    images, n = data.images, num_processes
    shards = images.shard_count
    if shards < n:
        return {"shards": shards, "reads_all_because": f"the on-disk cache has {shards} shard{'s' * (shards != 1)}, "
                                                       f"fewer than the {n} processes"}
    train = shard_rows(images, data.train_index, process_id, n, process_batch, seed)
    left_out = len(data.train_index) - len(train) * n
    if not len(train) or left_out > MAX_SHARD_LEFT_OUT * len(data.train_index):
        return {"shards": shards, "reads_all_because": "the shards of the on-disk cache hold too unequal numbers "
                                                       "of training images for equal shares"}
    return {"shards": shards, "shards_read": len(range(process_id, shards, n)), "train_index": train,
            "images": images.own_shards(process_id, n)}


def distributed_note(num_processes: int, devices: int, batch_size: int, share: ProcessShare,
                     val_images: int) -> str:
    """The log's sentence for a distributed run."""
    n = num_processes
    text = (f"Training on {n} process{'es' if n != 1 else ''} with {devices} device{'s' if devices != 1 else ''}: "
            f"each step takes a global batch of {batch_size * devices} images, {batch_size} per device; each process "
            f"reads its own {len(share.train_index)} training images")
    if share.shards_read:
        text += f", from its {share.shards_read} of the {share.shards} shards of the on-disk cache"
    if share.left_out:
        text += f" ({share.left_out} left out each epoch so that every process takes equal steps)"
    if share.reads_all_because:
        text += f"; {share.reads_all_because}, so every process reads the whole cache and keeps its own images"
    used_val = len(share.val_index) * n
    if val_images and not used_val:
        text += f"; the {val_images} validation images are fewer than one global batch, so there is no validation"
    elif used_val < val_images:
        text += f"; validation on {used_val} of the {val_images} validation images"
    return text + "."


class DistributedRun:
    """This process's part in a run: train on its share under ``DataParallel``, then save.

    Made by :meth:`start` once the process has joined; ``fit`` and ``save``
    take the arguments of ``fitting.train`` and ``store.save_project``, so a
    caller swaps them in for those.
    """

    def __init__(self, process_id: int, num_processes: int):
        self.process_id, self.num_processes = process_id, num_processes

    @classmethod
    def start(cls, cluster: Cluster | None = None, join_timeout_s: int = DEFAULT_JOIN_TIMEOUT_S,
              peer_timeout_s: int = DEFAULT_PEER_TIMEOUT_S) -> "DistributedRun":
        """Join the run (see :func:`join`); Keras must be on the JAX backend."""
        check_backend()
        return cls(*join(cluster or cluster_from_env(), join_timeout_s, peer_timeout_s))

    def fit(self, data: LoadedDataset, layers, settings, listener=None, **kwargs):
        """``fitting.train`` on this process's share, every device of every process taking part.

        ``settings.batch_size`` is per device, as on one machine; ``device`` is
        not used (JAX trains on the devices it finds). Every process must
        call this with the same arguments and seed.
        """
        import jax
        import keras

        from .training.progress import TrainingListener
        from .training.fitting import train

        listener = listener or TrainingListener()
        process_batch = settings.batch_size * jax.local_device_count()
        share = process_share(data, self.process_id, self.num_processes, process_batch, settings.seed)
        listener.on_message(distributed_note(self.num_processes, jax.device_count(), settings.batch_size, share,
                                             len(data.val_index)))
        local = dataclasses.replace(settings, batch_size=process_batch, device="cpu")
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=jax.devices(), auto_shard_dataset=False))
        try:
            return train(share, layers, local, listener, **kwargs)
        finally:
            keras.distribution.set_distribution(None)  # saving and predicting need it lifted

    def save(self, folder, project, model, probes=None) -> Path:
        """Save on every process; only process 0's goes to ``folder``, the others' into a scratch folder.

        Returns when every process has saved, so that no process reports a
        project that is not written yet.
        """
        import keras
        from jax.experimental import multihost_utils

        from .project.store import save_project

        keras.distribution.set_distribution(None)
        if self.process_id == 0:
            path = save_project(folder, project, model, probes=probes)
        else:
            with tempfile.TemporaryDirectory(prefix="cnndesk-process-") as scratch:
                save_project(Path(scratch) / "project", project, model, probes=probes)
            path = Path(folder).expanduser().resolve()
        multihost_utils.sync_global_devices("cnndesk saved")
        return path


def check_backend() -> None:
    """Raise unless Keras runs on JAX (it reads ``KERAS_BACKEND`` once, when first imported)."""
    import keras

    if keras.backend.backend() != "jax":
        raise DistributedError(f"Distributed training needs Keras on the JAX backend, but Keras was imported on "
                               f"{keras.backend.backend()!r}: set KERAS_BACKEND=jax before Keras is imported.")
