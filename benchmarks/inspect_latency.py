"""Warm latency of cnndesk's Inspector against plain Keras calls, for one 224x224 image.

Builds the "seed" preset for 10 classes at 224x224 RGB (untrained, fixed
seed: latency does not depend on the weights), wraps it in
``cnndesk.core.model.inspection.Inspector`` and times, after a warm-up, each of:

  probabilities   Inspector.probabilities on one prepared uint8 image
  activation maps Inspector.activation_maps (every conv/pool layer + probabilities)
  Grad-CAM        Inspector.gradcam for the top class (last conv layer)
  file -> result  Inspector.predict_files on one 224x224 JPEG (decode + prepare + predict + top-k)
  model(x)        plain model(x, training=False)      (reference)
  model.predict   plain model.predict(x, verbose=0)   (reference)

The same is then repeated on the model saved to .keras and loaded back (what
the app holds after opening a project; a reloaded Sequential has stale graph
nodes, see docs/tensorflow-notes.md), unless --no-reloaded.

Usage:
    .venv/bin/python benchmarks/inspect_latency.py [--runs 50] [--warmup 5] [--no-reloaded]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import numpy as np  # noqa: E402

SIZE = 224
TARGETS_MS = {"probabilities": 50.0, "activation maps": 100.0, "file -> result": 150.0}


def time_calls(fn, runs: int, warmup: int) -> np.ndarray:
    for _ in range(warmup):
        fn()
    out = np.empty(runs)
    for i in range(runs):
        t = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t
    return out * 1000.0


def measure(model, jpeg: Path, image: np.ndarray, runs: int, warmup: int) -> tuple[dict[str, np.ndarray], float]:
    from cnndesk.core.model.inspection import Inspector

    t = time.perf_counter()
    inspector = Inspector(model, [f"class {i}" for i in range(10)])
    inspector.warm_up()
    cls = int(np.argmax(inspector.probabilities(image)[0]))
    inspector.gradcam(image, cls)  # first trace
    ready_s = time.perf_counter() - t

    x = np.asarray(image, np.float32)[None]
    cases = {
        "probabilities": lambda: inspector.probabilities(image),
        "activation maps": lambda: inspector.activation_maps(image),
        "Grad-CAM": lambda: inspector.gradcam(image, cls),
        "file -> result": lambda: inspector.predict_files([str(jpeg)], k=3),
        "model(x)": lambda: np.asarray(model(x, training=False)),
        "model.predict": lambda: model.predict(x, verbose=0),
    }
    return {name: time_calls(fn, runs, warmup) for name, fn in cases.items()}, ready_s


def report(title: str, times: dict[str, np.ndarray], ready_s: float) -> None:
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"\n{title}  (Inspector construction + warm-up: {ready_s:.2f} s)")
    head = f"  {'call':16s} {'median ms':>10s} {'p90 ms':>8s} {'vs model(x)':>12s} {'vs predict':>11s} {'target':>10s}"
    print(head)
    print("  " + "-" * (len(head) - 2))
    for k, v in times.items():
        target = TARGETS_MS.get(k)
        verdict = "" if target is None else f"< {target:.0f} {'ok' if med[k] < target else 'MISSED'}"
        print(f"  {k:16s} {med[k]:10.2f} {np.percentile(v, 90):8.2f} {med[k] / med['model(x)']:11.2f}x "
              f"{med[k] / med['model.predict']:10.2f}x {verdict:>10s}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--no-reloaded", action="store_true", help="skip the saved-and-reloaded model")
    args = p.parse_args(argv)

    import keras
    import tensorflow as tf

    from _data import draw
    from cnndesk.core.model.architecture import build_model, preset

    keras.utils.set_random_seed(1337)
    model = build_model(preset("seed"), (SIZE, SIZE, 3), 10)
    with tempfile.TemporaryDirectory() as tmp:
        jpeg = Path(tmp) / "drop.jpg"
        draw("ring", np.random.default_rng(3), SIZE).save(jpeg, quality=90)
        from cnndesk.core.data.images import decode_image, Preprocessing

        image = decode_image(jpeg, Preprocessing((SIZE, SIZE), "rgb"))
        print(f"seed preset, 10 classes, {SIZE}x{SIZE} RGB, {model.count_params():,} parameters; "
              f"{args.runs} timed runs after {args.warmup} warm-up runs; TF {tf.__version__}, "
              f"Keras {keras.__version__}, {os.cpu_count()} CPU cores")
        times, ready = measure(model, jpeg, image, args.runs, args.warmup)
        report("fresh model", times, ready)
        if not args.no_reloaded:
            path = Path(tmp) / "model.keras"
            model.save(path)
            reloaded = keras.saving.load_model(path, safe_mode=True)
            times, ready = measure(reloaded, jpeg, image, args.runs, args.warmup)
            report("model saved and reloaded (.keras, safe mode)", times, ready)
    print(f"\ntargets: one prediction < {TARGETS_MS['probabilities']:.0f} ms, all maps < "
          f"{TARGETS_MS['activation maps']:.0f} ms, drop-to-result (file -> result) < {TARGETS_MS['file -> result']:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
