"""The devices training runs on: the CPU, one GPU, or several GPUs mirrored."""

from __future__ import annotations

from ..errors import UserError

def available_devices() -> list[tuple[str, str]]:
    """(id, description) of each device training can run on: "cpu", "gpu:0", …"""
    import tensorflow as tf

    devices = [("cpu", "CPU")]
    for i, gpu in enumerate(tf.config.list_physical_devices("GPU")):
        try:
            name = tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
        except Exception:
            name = gpu.name
        devices.append((f"gpu:{i}", f"GPU {i}: {name}"))
    return devices


def distribution_scope(device: str = "cpu", strategy=None):
    """The context to build and train in: a device, or a ``tf.distribute`` strategy.

    Args:
        device: "cpu", "gpu:N", "gpu:N,M,…" or "gpu:all" (several GPUs: ``MirroredStrategy``).
        strategy: any ``tf.distribute.Strategy``; overrides ``device``.
    """
    import tensorflow as tf

    if strategy is not None:
        return strategy.scope()
    ids = gpu_ids(device)
    if ids is None:
        return tf.device("/CPU:0")
    if len(ids) == 1:
        return tf.device(f"/GPU:{ids[0]}")
    return tf.distribute.MirroredStrategy([f"/GPU:{i}" for i in ids]).scope()


def several_devices(device: str | None) -> bool:
    """Whether ``device`` names a mirrored run ("gpu:0,1", or "gpu:all", which may be mirrored)."""
    device = (device or "").strip().lower()
    return "," in device or device == "gpu:all"


def gpu_ids(device: str | None) -> list[int] | None:
    """The GPUs ``device`` names, checked against those TensorFlow found; None for the CPU.

    "gpu:all" is every GPU TensorFlow found.

    Raises:
        UserError: an unknown device, or a GPU that is not there.
    """
    import tensorflow as tf

    device = (device or "cpu").strip().lower()
    if device == "cpu":
        return None
    if not device.startswith("gpu:"):
        raise UserError(f"Unknown device {device!r}: use 'cpu', 'gpu:N', 'gpu:N,M' or 'gpu:all'.")
    gpus = tf.config.list_logical_devices("GPU")
    found = f"{len(gpus)} GPU(s)" if gpus else "no GPU"
    if device == "gpu:all":
        if not gpus:
            raise UserError(f"'gpu:all' needs a GPU: TensorFlow found {found}. Train on the CPU or install the "
                            "'gpu' extra with a supported NVIDIA driver.")
        return list(range(len(gpus)))
    try:
        ids = [int(part) for part in device[4:].split(",")]
    except ValueError:
        raise UserError(f"Unknown device {device!r}: use 'cpu', 'gpu:N', 'gpu:N,M' or 'gpu:all'.") from None
    missing = [i for i in ids if not 0 <= i < len(gpus)]
    if missing:
        raise UserError(f"GPU {missing[0]} is not available: TensorFlow found {found}. Train on the CPU or install "
                        "the 'gpu' extra with a supported NVIDIA driver.")
    return ids


def replica_count(device: str = "cpu", strategy=None) -> int:
    """How many devices one training step runs on; the batch size is per device, so the step's
    (global) batch is the batch size times this."""
    if strategy is not None:
        return int(strategy.num_replicas_in_sync)
    ids = gpu_ids(device)
    return len(ids) if ids else 1


def mirrored_note(batch_size: int, replicas: int) -> str:
    """The log's sentence for a run mirrored over ``replicas`` devices."""
    return (f"Training on {replicas} devices (mirrored): each step takes a global batch of {batch_size * replicas} "
            f"images, {batch_size} per device.")
