"""What recording probe images costs: training with and without a ``ProbeRecorder``, in one process.

Trains the "seed" preset on the benchmark shapes (10 classes, JPEGs generated once and reused)
through ``cnndesk.core.training.fitting.train`` with a ``ModelPool``, as the GUI's engine does, in
alternating order: without probes, with 4 probes recorded after every epoch, and (``--every``)
with 4 probes recorded every N batches too. Each run's time is the wall time of ``train`` (the
model comes from the pool in every variant, so the difference is the recording); the first round
only warms up (tracing) and is not counted. The slowdown is the median over rounds of
(time with / time without - 1), each round's runs back to back in rotating order, so that a busy
moment of a shared machine weighs on both sides. Because that ratio is noisy on a shared machine,
the recorder's own time (the clock read around each frame) is printed too, as a share of the run
without probes: the figure noise does not inflate. It also prints the memory and disk figures.

Usage:
    .venv/bin/python benchmarks/probe_overhead.py [--rounds 4] [--epochs 3] [--per-class 100]
        [--image-size 64] [--every 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="counted rounds (one more warms up)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--every", type=int, default=10, help="the mid-epoch variant records every N batches")
    args = parser.parse_args()

    from _data import ensure_dataset
    from cnndesk.core.model.architecture import preset, TrainingSettings
    from cnndesk.core.data.dataset import DatasetConfig, load_dataset
    from cnndesk.core.data.images import Preprocessing
    from cnndesk.core.training.model_pool import ModelPool
    from cnndesk.core.training.probes import DEFAULT_BUDGET, known_labels, load_probes, ProbeRecorder, ProbeRecording
    from cnndesk.core.training.fitting import train

    folder = ensure_dataset(None, args.per_class, size=args.image_size)
    data = load_dataset(folder, DatasetConfig(Preprocessing((args.image_size, args.image_size)), val_split=0.2))
    paths = [data.paths[i] for i in data.val_index[:4]]
    settings = TrainingSettings(batch_size=args.batch_size, epochs=args.epochs, patience=0, seed=7)
    layers = preset("seed")
    pool = ModelPool()
    variants = {"off": None, "each epoch": 0, f"every {args.every} batches": args.every}
    times: dict[str, list[float]] = {name: [] for name in variants}
    recorded: dict[str, ProbeRecording] = {}
    record_seconds: dict[str, list[float]] = {name: [] for name in variants}
    model = None
    for round_ in range(args.rounds + 1):
        order = list(variants)
        order = order[round_ % len(order):] + order[:round_ % len(order)]  # rotate who goes first
        for name in order:
            every = variants[name]
            recorder = None
            if every is not None:
                rec = ProbeRecording(load_probes(paths, data.preprocessing, data.class_names, known_labels(data)),
                                     data.class_names)
                recorder = ProbeRecorder(rec, data.preprocessing, every_batches=every)
            start = time.perf_counter()
            result = train(data, layers, settings, pool=pool, callbacks=(recorder.callback(),) if recorder else ())
            seconds = time.perf_counter() - start
            if model is not None and result.model is not model:
                pool.give_back(model)
            model = result.model
            if round_ == 0:
                continue  # warm-up: tracing the train step and the inspector
            times[name].append(seconds)
            if recorder is not None:
                recorded[name] = recorder.recording
                record_seconds[name].append(recorder.seconds)
        print(f"round {round_}{' (warm-up)' if round_ == 0 else ''}: " + ", ".join(
            f"{n} {times[n][-1]:.2f} s" for n in variants if round_ and times[n]), flush=True)

    steps = -(-len(data.train_index) // args.batch_size)
    print(f"\n{len(data.train_index)} training images at {args.image_size}x{args.image_size}, seed preset, "
          f"batch {args.batch_size}, {args.epochs} epochs ({steps} batches each), 4 probes, "
          f"{args.rounds} counted rounds")
    base = times["off"]
    for name in list(variants)[1:]:
        ratios = [t / b - 1 for t, b in zip(times[name], base)]
        own = [r / b for r, b in zip(record_seconds[name], base)]
        print(f"{name:>20}: median slowdown {statistics.median(ratios):+.1%} (rounds: "
              + ", ".join(f"{r:+.1%}" for r in ratios) + f"); the recording's own time "
              f"{statistics.median(record_seconds[name]):.3f} s, {statistics.median(own):.1%} of a run without probes")
    print(f"{'off':>20}: median {statistics.median(base):.2f} s per run")

    rec = recorded["each epoch"]
    frame = rec.frames[-1]
    with tempfile.TemporaryDirectory() as tmp:
        saved = rec.save(Path(tmp) / "probes")
        disk = sum(p.stat().st_size for p in saved.iterdir())
    print(f"\nbudget: {DEFAULT_BUDGET / 2**20:.0f} MiB of frames per recording; one frame of 4 probes here is "
          f"{frame.nbytes / 1024:.0f} KiB ({len(rec.layers)} layers), so {DEFAULT_BUDGET // frame.nbytes} frames "
          f"fit before thinning; the {len(rec.frames)}-frame recording holds {rec.nbytes / 1024:.0f} KiB in memory "
          f"and takes {disk / 1024:.0f} KiB on disk (compressed)")


if __name__ == "__main__":
    main()
