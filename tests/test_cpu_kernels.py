"""The start-up choice of TensorFlow's CPU kernels (cnndesk.core.cpu_kernels)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnndesk.core.cpu_kernels import ONEDNN_VARIABLE, use_onednn_kernels

ROOT = Path(__file__).resolve().parent.parent


def test_an_x86_64_cpu_gets_onednn_kernels():
    for machine in ("x86_64", "AMD64"):
        env = {}
        assert use_onednn_kernels(env, machine) is True
        assert env == {ONEDNN_VARIABLE: "1"}


def test_the_users_own_choice_is_kept():
    env = {ONEDNN_VARIABLE: "0"}
    assert use_onednn_kernels(env, "x86_64") is False
    assert env == {ONEDNN_VARIABLE: "0"}


def test_other_processors_are_left_to_tensorflow():
    env = {}
    assert use_onednn_kernels(env, "aarch64") is False
    assert use_onednn_kernels(env, "arm64") is False
    assert env == {}


def test_the_cli_chooses_before_tensorflow_is_imported():
    """A command that fails on its input after start-up: the choice is made, TensorFlow never imported."""
    import platform

    expected = "1" if platform.machine().lower() in ("x86_64", "amd64") else "unset"
    env = {k: v for k, v in os.environ.items() if k != ONEDNN_VARIABLE}
    env["PYTHONPATH"] = str(ROOT)
    code = ("import os, sys\n"
            "from cnndesk import cli\n"
            "rc = cli.main(['predict', '/nonexistent-project', '/nonexistent.png'])\n"
            "print(rc, os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset'), 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["2", expected, "False"], out.stderr
    assert "does not exist" in out.stderr


def _niceness(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are Linux's")
def test_a_thread_that_yields_to_the_window_runs_lower_and_so_do_the_threads_it_starts():
    import threading

    from cnndesk.core.cpu_kernels import ENGINE_NICENESS, yield_to_the_window

    window = _niceness(threading.get_native_id())
    seen = {}

    def child():
        seen["child"] = _niceness(threading.get_native_id())

    def engine():
        seen["lowered"] = yield_to_the_window()
        seen["engine"] = _niceness(threading.get_native_id())
        started = threading.Thread(target=child)
        started.start()
        started.join()

    t = threading.Thread(target=engine)
    t.start()
    t.join()
    assert seen["lowered"] is True
    assert seen["engine"] == seen["child"] == min(19, window + ENGINE_NICENESS)
    assert _niceness(threading.get_native_id()) == window  # the calling process's other threads keep theirs


CPUINFO_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse sse2 avx avx2 fma
"""
CPUINFO_BF16 = CPUINFO_AVX2.replace("avx2 fma", "avx2 fma avx512f avx512_vnni avx512_bf16")


def test_the_cpu_flags_and_model_are_read_from_cpuinfo(tmp_path):
    from cnndesk.core.cpu_kernels import cpu_flags, cpu_model, describe_cpu, native_bfloat16

    avx2, bf16 = tmp_path / "avx2", tmp_path / "bf16"
    avx2.write_text(CPUINFO_AVX2)
    bf16.write_text(CPUINFO_BF16)
    assert cpu_flags(str(avx2)) == {"fpu", "sse", "sse2", "avx", "avx2", "fma"}
    assert cpu_model(str(avx2)) == "AMD EPYC 7B13"
    assert not native_bfloat16(cpu_flags(str(avx2)))
    assert native_bfloat16(cpu_flags(str(bf16)))
    assert native_bfloat16(frozenset({"amx_bf16"}))
    assert cpu_flags(str(tmp_path / "missing")) is None and not native_bfloat16(None)
    assert describe_cpu(str(bf16)) == (
        "AMD EPYC 7B13; avx2 yes, avx512f yes, avx512_vnni yes, avx512_bf16 yes, amx_bf16 no")
    assert describe_cpu(str(tmp_path / "missing")).endswith("; flags unknown")
