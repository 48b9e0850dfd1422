"""Held-out accuracy in float32 and in bfloat16 mixed precision, side by side, on small real datasets.

Trains the seed preset and the deeper preset in both precisions (``TrainingSettings.precision``
"float32" and "bfloat16", i.e. what ``--precision`` forces) with several seeds, on UCI digits
(scikit-learn's 8x8 handwritten digits at 32 px grey) and one small photo folder (64 px colour
patches of six photos shipped with scikit-image), and prints the held-out accuracy of each pair
(mean, lowest, highest over the seeds), the epochs run and the seconds per epoch. The datasets and
their fixed held-out split are ``small_data.py``'s; training is cnndesk's ``train`` with every other
setting at its default (early stopping, keep-the-best-epoch, Adam 1e-3, batch 32).

On a CPU without native bfloat16 (no ``avx512_bf16`` or ``amx_bf16``) TensorFlow emulates it and
the bfloat16 runs are several times slower: the seconds column then says nothing about a CPU that
has it, only the accuracies do. The first line names the CPU and its flags.

Needs the ``bench`` extra (scikit-learn, scikit-image).

    .venv/bin/python benchmarks/precision_accuracy.py [--datasets digits,patches] [--presets seed,deeper]
        [--seeds 1337,1,2] [--epochs 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from small_data import FORMAT, write_folders  # noqa: E402

PRECISIONS = ("float32", "bfloat16")


def run(train_dir: Path, test_dir: Path, name: str, preset_name: str, precision: str, seed: int,
        epochs: int) -> dict:
    from cnndesk.core.data.dataset import DatasetConfig, load_dataset
    from cnndesk.core.data.images import Preprocessing
    from cnndesk.core.model.architecture import preset, TrainingSettings
    from cnndesk.core.training.fitting import train

    size, color = FORMAT[name]
    config = DatasetConfig(Preprocessing((size, size), color), seed=seed)
    data = load_dataset(train_dir, config)
    test = load_dataset(test_dir, DatasetConfig(config.preprocessing, val_split=0.0))
    t0 = time.perf_counter()
    result = train(data, preset(preset_name), TrainingSettings(epochs=epochs, seed=seed, precision=precision))
    seconds = time.perf_counter() - t0
    probs = np.asarray(result.model(test.images.astype(np.float32), training=False))
    return {"dataset": name, "preset": preset_name, "precision": precision, "seed": seed,
            "held_out": float((probs.argmax(1) == test.labels).mean()), "epochs_run": len(result.history),
            "seconds_per_epoch": seconds / max(1, len(result.history)),
            "model_dtype": result.model.layers[-1].dtype_policy.name}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="digits,patches")
    parser.add_argument("--presets", default="seed,deeper")
    parser.add_argument("--seeds", default="1337,1,2")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="default float32,bfloat16")
    parser.add_argument("--json", action="store_true", help="one JSON object per run as well")
    args = parser.parse_args(argv)

    from cnndesk.core.cpu_kernels import describe_cpu, use_onednn_kernels

    use_onednn_kernels()  # as the app and the CLI start
    from cnndesk.core.training.precision import choose_precision

    print(f"CPU: {describe_cpu()}")
    print(f"auto would train in: {choose_precision('auto').note}")
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="cnndesk-precision-") as tmp:
        for name in args.datasets.split(","):
            train_dir, test_dir = write_folders(name, Path(tmp))
            for preset_name in args.presets.split(","):
                for seed in seeds:
                    for precision in args.precisions.split(","):  # alternating, so that both meet the same load
                        row = run(train_dir, test_dir, name, preset_name, precision, seed, args.epochs)
                        rows.append(row)
                        if args.json:
                            print(json.dumps(row), flush=True)
                        print(f"  {name:8} {preset_name:7} seed {seed:5} {precision:8} held-out "
                              f"{row['held_out']:.3f}  {row['epochs_run']:2} epochs  "
                              f"{row['seconds_per_epoch']:6.1f} s/epoch  saved as {row['model_dtype']}", flush=True)
    print()
    print(f"{'dataset':8} {'preset':7} | {'float32 held-out':24} | {'bfloat16 held-out':24} | s/epoch f32 / bf16")
    for name in args.datasets.split(","):
        for preset_name in args.presets.split(","):
            cells = []
            speed = []
            for precision in PRECISIONS:
                got = [r for r in rows if (r["dataset"], r["preset"], r["precision"]) == (name, preset_name, precision)]
                if not got:
                    cells.append("-")
                    speed.append(float("nan"))
                    continue
                acc = [r["held_out"] for r in got]
                cells.append(f"{statistics.mean(acc):.3f} ({min(acc):.3f}-{max(acc):.3f})")
                speed.append(statistics.median(r["seconds_per_epoch"] for r in got))
            print(f"{name:8} {preset_name:7} | {cells[0]:24} | {cells[1]:24} | {speed[0]:.1f} / {speed[1]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
