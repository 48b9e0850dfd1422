"""Which TensorFlow kernels run the convolutions on an x86-64 CPU.

TensorFlow's x86-64 builds carry oneDNN's convolution kernels but use them by
default only on CPUs with AVX-512 neural-network instructions (VNNI, BF16,
AMX). Elsewhere, e.g. on an AVX2 CPU, a convolution runs as many small matrix
products through Eigen, which for the narrow layers of small CNNs costs about
three times the CPU time of oneDNN's kernels (docs/training-speed.md). The
variable that chooses is read once, when TensorFlow is imported, so the choice
is made at start-up, before anything imports TensorFlow.
"""

from __future__ import annotations

import os
import platform
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
