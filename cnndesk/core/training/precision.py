"""The arithmetic a run trains in: float32, or bfloat16 mixed precision where the CPU computes it natively.

On a CPU with bfloat16 instructions (``avx512_bf16``, ``amx_bf16``) Keras's
``mixed_bfloat16`` policy (bfloat16 activations and products, float32
weights) trained the seed model in 0.70x the time of float32; on a CPU
without them TensorFlow emulates bfloat16 and the same policy was 3.7x
slower (docs/training-speed.md). So "auto", the default, reads the CPU's
flags (``cpu_kernels.native_bfloat16``) and chooses per CPU; "float32" and
"bfloat16" force a choice (the settings' Precision, ``--precision``).

Whatever the run trained in, the model it returns is float32: the same
layers with the float32 policy and the trained weights (the weights of a
mixed-precision model are float32 already, so nothing is rounded). Saved and
exported models therefore carry no trace of the policy, and the policy is set
only while a run builds and fits (``policy_during``): the viewer and every
other job, in the same thread, compute in float32. The output layer and the
loss are float32 in both precisions (``model.architecture.build_model``).
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass

from ..cpu_kernels import BFLOAT16_FLAGS, cpu_flags, native_bfloat16
from ..errors import UserError
from ..model.architecture import FLOAT32_KINDS, PRECISIONS

#: the Keras policy of each precision a run can train in
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


@dataclass(frozen=True)
class Precision:
    """What a run trains in ("float32" or "bfloat16") and why, for the log."""

    name: str
    reason: str

    @property
    def policy(self) -> str:
        """The Keras dtype policy: "float32" or "mixed_bfloat16"."""
        return POLICIES[self.name]

    def float32(self) -> "Precision":
        """Float32, for what a run hands on (``with_policy``)."""
        return Precision("float32", self.reason) if self.name != "float32" else self

    @property
    def note(self) -> str:
        """The training log's sentence, e.g. "precision: float32 (this CPU has no native bfloat16)"."""
        label = "bfloat16 mixed precision" if self.name == "bfloat16" else "float32"
        return f"precision: {label} ({self.reason})"


@functools.lru_cache(maxsize=1)
def _this_cpu_flags() -> frozenset[str] | None:
    return cpu_flags()


def choose_precision(setting: str = "auto", device: str = "cpu",
                     flags: frozenset[str] | None | bool = True) -> Precision:
    """The precision a run with these settings trains in.

    Args:
        setting: "auto" (bfloat16 on a CPU with native bfloat16, float32 elsewhere), "float32" or "bfloat16".
        device: the settings' device; "auto" keeps GPUs in float32 (only CPUs were measured).
        flags: the CPU's flags; True (the default) reads this CPU's once.

    Raises:
        UserError: an unknown setting.
    """
    if setting not in PRECISIONS:
        raise UserError(f"Unknown precision {setting!r}; choose from {', '.join(PRECISIONS)}.")
    flags = _this_cpu_flags() if flags is True else flags
    on_cpu = (device or "cpu").strip().lower() == "cpu"
    native = native_bfloat16(flags)
    if setting == "float32":
        return Precision("float32", "chosen in the settings")
    if setting == "bfloat16":
        slow = "" if native or not on_cpu else "; this CPU has no native bfloat16, so it is emulated and slower"
        return Precision("bfloat16", f"chosen in the settings{slow}")
    if not on_cpu:
        return Precision("float32", "the automatic choice uses bfloat16 only on CPUs that compute it natively")
    if flags is None:
        return Precision("float32", "this CPU's instruction set could not be read")
    if native:
        found = ", ".join(f for f in BFLOAT16_FLAGS if f in flags)
        return Precision("bfloat16", f"this CPU computes bfloat16 natively: {found}")
    return Precision("float32", "this CPU has no native bfloat16")


@contextmanager
def policy_during(precision: Precision):
    """Keras's global dtype policy is ``precision``'s inside the block and what it was before after it.

    Keras keeps the policy per thread; restoring it matters for the thread's later jobs.
    """
    import keras

    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision.policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)


def with_policy(model, precision: Precision):
    """``model`` itself when its layers already compute in ``precision``, else the same layers and weights in it.

    The output layer and the head (``FLOAT32_KINDS``) stay float32 either way. Works on any model whose config Keras can rebuild
    (``Sequential`` and functional models, cnndesk's own and opened ones).
    """
    if model_policy(model) == precision.policy:
        return model
    config = model.get_config()
    output_name = model.layers[-1].name if model.layers else None
    _replace_policies(config, precision.policy, output_name)
    twin = model.__class__.from_config(config)  # each layer's config names its policy: the global one is not read
    twin.set_weights(model.get_weights())
    return twin


def copy_optimizer_state(source, twin) -> None:
    """Give ``twin`` (compiled, from ``with_policy``) the state of ``source``'s optimizer (step count,
    moments), so that it saves and continues as ``source`` would; both keep float32 optimizer variables."""
    twin.optimizer.build(twin.trainable_variables)
    if source.optimizer is None or not source.optimizer.built:
        return
    pairs = list(zip(source.optimizer.variables, twin.optimizer.variables))
    if len(source.optimizer.variables) != len(twin.optimizer.variables) or any(
            tuple(a.shape) != tuple(b.shape) for a, b in pairs):
        return  # not the same optimizer: the twin starts fresh, as after compile
    for a, b in pairs:
        b.assign(a)


def model_policy(model) -> str:
    """The policy ``model``'s layers compute in: "mixed_bfloat16" when any layer does, else "float32"."""
    for layer in model.layers:
        if getattr(layer, "dtype_policy", None) is not None and layer.dtype_policy.name == POLICIES["bfloat16"]:
            return POLICIES["bfloat16"]
    return POLICIES["float32"]


def _replace_policies(config, policy: str, output_name: str | None, kind: str | None = None) -> None:
    """Every DTypePolicy in ``config`` (a layer config tree) set to ``policy``; the output layer's and the
    head's (``FLOAT32_KINDS``) to float32."""
    if isinstance(config, dict):
        kind = config.get("class_name", kind)
        inner = config.get("config")
        if isinstance(inner, dict) and isinstance(kind, str):
            _replace_policies(inner, policy, output_name, kind)
            for key, value in config.items():
                if key != "config":
                    _replace_policies(value, policy, output_name)
            return
        keep = (config.get("name") == output_name and output_name is not None) or kind in FLOAT32_KINDS
        dtype = config.get("dtype")
        if isinstance(dtype, dict) and dtype.get("class_name") == "DTypePolicy":
            dtype["config"]["name"] = POLICIES["float32"] if keep else policy
        for key, value in config.items():
            if key != "dtype":
                _replace_policies(value, policy, output_name)
    elif isinstance(config, list):
        for value in config:
            _replace_policies(value, policy, output_name)
