"""Which TensorFlow kernels run the convolutions on an x86-64 CPU.

TensorFlow's x86-64 builds carry oneDNN's convolution kernels but use them by
default only on CPUs with AVX-512 neural-network instructions (VNNI, BF16,
AMX). Elsewhere, e.g. on an AVX2 CPU, a convolution runs as many small matrix
products through Eigen, which for the narrow layers of small CNNs costs about
three times the CPU time of oneDNN's kernels (docs/training-speed.md). The
variable that chooses is read once, when TensorFlow is imported, so the choice
is made at start-up, before anything imports TensorFlow.

It also reads the CPU's model and instruction-set flags (:func:`cpu_flags`,
:func:`native_bfloat16`: whether bfloat16 arithmetic runs in hardware, which
decides the training precision, ``core.training.precision``), and says how the
app's engine thread shares the CPU with the window (:func:`yield_to_the_window`).
"""

from __future__ import annotations

import os
import platform
import sys
import threading
from typing import MutableMapping

#: TensorFlow's switch for its oneDNN kernels ("1" on, "0" off); read when TensorFlow is imported
ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
_X86_64 = ("x86_64", "amd64")


def use_onednn_kernels(environ: MutableMapping[str, str] | None = None, machine: str | None = None) -> bool:
    """Ask TensorFlow for its oneDNN kernels on an x86-64 CPU, unless the user chose already.

    Call it before TensorFlow is imported; afterwards it changes nothing. A
    value the user set (``TF_ENABLE_ONEDNN_OPTS=0`` included) is kept, and
    other processors (ARM, where TensorFlow decides with other libraries) are
    left alone.

    Args:
        environ: the environment to set. Defaults to ``os.environ``.
        machine: the processor as ``platform.machine()`` names it. Defaults to this one.

    Returns:
        True if it set the variable.
    """
    environ = os.environ if environ is None else environ
    machine = (machine if machine is not None else platform.machine()).lower()
    if machine not in _X86_64 or ONEDNN_VARIABLE in environ:
        return False
    environ[ONEDNN_VARIABLE] = "1"
    return True


#: the CPU flags that say bfloat16 products run in hardware (AVX-512 BF16, AMX BF16), as /proc/cpuinfo names them
BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")
#: the flags a speed figure names beside the CPU model (benchmarks, docs/training-speed.md)
SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")
CPUINFO = "/proc/cpuinfo"


def _cpuinfo_field(name: str, cpuinfo: str) -> str | None:
    """The value of the first ``name`` line in ``cpuinfo`` (the first processor's), None if none or no file."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_flags(cpuinfo: str = CPUINFO) -> frozenset[str] | None:
    """The instruction-set flags of this CPU as Linux lists them ("avx2", "avx512_bf16", …).

    Returns:
        the flags of the first processor in ``cpuinfo``; None where the file is
        missing or lists none (not Linux, or not x86: ARM lists "Features").
    """
    flags = _cpuinfo_field("flags", cpuinfo)
    return frozenset(flags.split()) if flags is not None else None


def cpu_model(cpuinfo: str = CPUINFO) -> str:
    """This CPU's model name ("AMD EPYC 9B14", …), or the processor as ``platform`` names it."""
    return _cpuinfo_field("model name", cpuinfo) or platform.processor() or platform.machine() or "unknown CPU"


def native_bfloat16(flags: frozenset[str] | None) -> bool:
    """Whether a CPU with ``flags`` computes bfloat16 products in hardware (``BFLOAT16_FLAGS``).

    Elsewhere TensorFlow emulates them, and a bfloat16 step costs several
    times a float32 one (3.7x on an AVX2 CPU, docs/training-speed.md).
    """
    return bool(flags) and any(flag in flags for flag in BFLOAT16_FLAGS)


def describe_cpu(cpuinfo: str = CPUINFO) -> str:
    """One line for a benchmark's output: the model and which of ``SPEED_FLAGS`` it has, e.g.
    "AMD EPYC; avx2 yes, avx512f no, avx512_vnni no, avx512_bf16 no, amx_bf16 no"."""
    flags = cpu_flags(cpuinfo)
    have = ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in SPEED_FLAGS) if flags is not None else ""
    return f"{cpu_model(cpuinfo)}; {have or 'flags unknown'}"


#: how much lower than the window the app's engine thread (and every thread it starts) runs, in nice steps
ENGINE_NICENESS = 5


def yield_to_the_window(steps: int = ENGINE_NICENESS) -> bool:
    """Lower the calling thread's CPU priority by ``steps`` nice steps, on Linux; elsewhere do nothing.

    The app calls it first thing in its engine thread, before TensorFlow is
    imported there, so TensorFlow's compute and ``tf.data`` threads, which
    that thread starts and which inherit its priority, run below the GUI
    thread. On a machine with few cores they keep every core busy while
    training, and the window's thread, at the same priority, waited its turn
    for tens of milliseconds (docs/training-speed.md). Nothing else runs slower
    while the CPU has room: a lower priority only decides who waits when it
    has not. The window stays at the priority it was started with.

    Linux keeps a priority per thread (``setpriority`` on the thread's id) and
    a new thread inherits its creator's; other systems do not work this way,
    so there the call changes nothing.

    Returns:
        True if the priority was lowered.
    """
    if not sys.platform.startswith("linux"):
        return False
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + steps))
    except OSError:  # a sandbox that forbids it: the app works as before
        return False
    return True
