"""Where an epoch of the seed preset goes on this CPU: input pipeline, kernels, optimizer, callbacks, Python.

Times the pieces of one training epoch of cnndesk's seed model (``build_model`` +
``compile_model``, the app's defaults: Adam, batch 32, oneDNN kernels as the app starts)
on the benchmark JPEGs (``_data.ensure_dataset``) at each image size, each piece on its own,
in alternating rounds in one process:

    epoch        ``fit`` for one epoch on cnndesk's training pipeline (``make_tf_dataset``) with
                 cnndesk's callbacks (``Reporter``: per-batch report, cancel check; ``BestWeights``),
                 without the validation pass
    no callbacks the same ``fit`` without them
    fixed batch  the same ``fit`` on one batch repeated from memory (no input pipeline work)
    pipeline     the training pipeline alone: iterating an epoch's batches with nothing training
    fwd+bwd      the model's forward and backward pass on one batch (a ``tf.function``), times steps
    optimizer    Adam's update with those gradients (a ``tf.function``), times steps
    validation   ``evaluate`` on the validation pipeline

and derives: the input pipeline's share that training waits for (no callbacks - fixed batch), the
callbacks' (epoch - no callbacks), and Keras's and Python's own per-batch work (fixed batch - steps
x (fwd+bwd + optimizer)). Wall and CPU seconds (of this process) are printed, medians over rounds;
on a shared machine the CPU seconds move less with other load. The first lines name the CPU and
its flags (which kernels TensorFlow can use) and the precision ``auto`` would train in.

    .venv/bin/python benchmarks/epoch_profile.py [--size 64,128] [--per-class 60] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SEED = 1337


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def profile(size: int, per_class: int, rounds: int) -> None:
    import keras
    import numpy as np
    import tensorflow as tf

    from _data import ensure_dataset
    from cnndesk.core.data.dataset import DatasetConfig, load_dataset
    from cnndesk.core.data.images import Preprocessing
    from cnndesk.core.data.pipeline import make_tf_dataset, steps_for
    from cnndesk.core.model.architecture import build_model, compile_model, preset, TrainingSettings
    from cnndesk.core.training.progress import Reporter, StartTimes, TrainingListener
    from cnndesk.core.training.stopping import BestWeights

    folder = ensure_dataset(None, per_class, size, quiet=True)
    data = load_dataset(folder, DatasetConfig(Preprocessing((size, size), "rgb"), val_split=0.2, seed=SEED))
    settings = TrainingSettings(seed=SEED)
    bs, n_train = settings.batch_size, len(data.train_index)
    steps = steps_for(n_train, bs)
    keras.utils.set_random_seed(SEED)
    model = build_model(preset("seed"), data.preprocessing.input_shape, data.num_classes)
    compile_model(model, settings)
    train_ds = make_tf_dataset(data.images, data.labels, data.num_classes, bs, training=True, seed=SEED,
                               repeat=True, index=data.train_index)
    val_ds = make_tf_dataset(data.images, data.labels, data.num_classes, bs, training=False, index=data.val_index)
    x, y = next(iter(train_ds))
    fixed = tf.data.Dataset.from_tensors((x, y)).repeat()

    def callbacks():
        return [Reporter(TrainingListener(), None, 1, steps, n_train, bs, 0, StartTimes()),
                BestWeights(data.validation_size())]

    loss_fn = model.loss if callable(model.loss) else keras.losses.get(model.loss)

    @tf.function
    def gradients(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        return tape.gradient(loss, model.trainable_variables)

    grads = gradients(x, y)
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)

    @tf.function
    def update(grads):
        optimizer.apply(grads, model.trainable_variables)

    update(grads)

    def pipeline():
        it = iter(train_ds)
        for _ in range(steps):
            next(it)

    def fwd_bwd():
        for _ in range(steps):
            out = gradients(x, y)
        _ = out[0].numpy()

    def optimizer_steps():
        for _ in range(steps):
            update(grads)
        _ = model.trainable_variables[0].numpy()

    pieces = {
        "epoch": lambda: model.fit(train_ds, epochs=1, steps_per_epoch=steps, callbacks=callbacks(), verbose=0),
        "no callbacks": lambda: model.fit(train_ds, epochs=1, steps_per_epoch=steps, verbose=0),
        "fixed batch": lambda: model.fit(fixed, epochs=1, steps_per_epoch=steps, verbose=0),
        "pipeline": pipeline,
        "fwd+bwd": fwd_bwd,
        "optimizer": optimizer_steps,
        "validation": lambda: model.evaluate(val_ds, verbose=0),
    }
    for name in ("epoch", "no callbacks", "fixed batch", "validation"):
        pieces[name]()  # traced and warmed before timing
    got = {name: [] for name in pieces}
    for _ in range(rounds):
        for name, fn in pieces.items():
            got[name].append(timed(fn))
    wall = {k: statistics.median(w for w, _ in v) for k, v in got.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in got.items()}
    print(f"\n{size}x{size} px, seed preset, {n_train} training images, batch {bs}, {steps} steps, "
          f"{len(data.val_index)} validation images; {rounds} rounds, load average {os.getloadavg()[0]:.1f}")
    print(f"  {'piece':14} {'wall s':>8} {'CPU s':>8} {'ms/step':>8}")
    for name in pieces:
        print(f"  {name:14} {wall[name]:8.3f} {cpu[name]:8.3f} {1000 * wall[name] / steps:8.1f}")
    derived = {
        "input pipeline (waited for)": "no callbacks - fixed batch",
        "callbacks": "epoch - no callbacks",
        "Keras + Python per batch": "fixed batch - fwd+bwd - optimizer",
    }
    values = {
        "input pipeline (waited for)": (wall["no callbacks"] - wall["fixed batch"],
                                        cpu["no callbacks"] - cpu["fixed batch"]),
        "callbacks": (wall["epoch"] - wall["no callbacks"], cpu["epoch"] - cpu["no callbacks"]),
        "Keras + Python per batch": (wall["fixed batch"] - wall["fwd+bwd"] - wall["optimizer"],
                                     cpu["fixed batch"] - cpu["fwd+bwd"] - cpu["optimizer"]),
    }
    print("  of the epoch (share of 'epoch', wall and CPU):")
    for name in ("fwd+bwd", "optimizer"):
        print(f"    {name + ' (kernels)' if name == 'fwd+bwd' else name:28} {wall[name]:7.3f} s "
              f"{100 * wall[name] / wall['epoch']:5.1f} %   CPU {cpu[name]:7.3f} s {100 * cpu[name] / cpu['epoch']:5.1f} %")
    for name, how in derived.items():
        w, c = values[name]
        print(f"    {name:28} {w:7.3f} s {100 * w / wall['epoch']:5.1f} %   CPU {c:7.3f} s {100 * c / cpu['epoch']:5.1f} %"
              f"   ({how})")
    print(f"    (the pipeline alone, beside nothing: {wall['pipeline']:.3f} s, {cpu['pipeline']:.3f} CPU-s; "
          f"it runs beside the steps in prefetch)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="64,128")
    parser.add_argument("--per-class", type=int, default=60, help="JPEGs per class (10 classes). Default 60")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    from cnndesk.core.cpu_kernels import describe_cpu, use_onednn_kernels

    use_onednn_kernels()  # as the app and the CLI start, before TensorFlow is imported
    from cnndesk.core.library_warnings import hide_library_warnings

    hide_library_warnings()
    from cnndesk.core.training.precision import choose_precision

    print(f"CPU: {describe_cpu()}; {os.cpu_count()} cores")
    print(f"auto would train in: {choose_precision('auto').note} (this profile runs float32)")
    for size in args.size.split(","):
        profile(int(size), args.per_class, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
