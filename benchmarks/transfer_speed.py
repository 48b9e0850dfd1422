"""Epoch time of a pretrained preset's head: cached features vs. through the frozen backbone vs. plain Keras.

Trains the head of a pretrained preset (default MobileNetV3Small) on the
same folder of JPEGs three ways, in one process, alternating their order
each round so that a busy machine slows all three alike:

  cached   cnndesk.core.training.fitting.train with no augmentation: the frozen
           backbone's features are computed once per image, then the head
           trains on them (the training log says so)
  through  the same run forced through the frozen backbone every batch
           (what cnndesk does when augmentation is on)
  keras    a plain Keras transfer-learning script written the way the Keras
           transfer-learning guide does it: image_dataset_from_directory,
           base_model.trainable = False, base_model(x, training=False),
           GlobalAveragePooling2D, Dropout(0.2), Dense, fit with prefetch

The backbone has random weights (weights="none" for cnndesk, weights=None for
Keras): the time per epoch does not depend on the values of the weights, and
nothing is downloaded. An epoch's time includes its validation pass; the
figures are medians over epochs 2..N (epoch 1 traces the step functions).
The cached path's one-off feature computation is printed separately.

Usage:
    .venv/bin/python benchmarks/transfer_speed.py [--family MobileNetV3Small] [--per-class 30]
        [--image-size 128] [--epochs 3] [--rounds 2] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _data import ensure_dataset  # noqa: E402


def run_cnndesk(data, family: str, epochs: int, batch_size: int, cached: bool) -> dict:
    from cnndesk.core.model.architecture import LayerSpec, TrainingSettings
    from cnndesk.core.training.progress import TrainingListener
    from cnndesk.core.training.transfer import train_transfer

    layers = [LayerSpec("Backbone", {"family": family, "weights": "none", "fine_tune": 0}),
              LayerSpec("GlobalAveragePooling2D"), LayerSpec("Dropout", {"rate": 0.2}),
              LayerSpec("Dense", {"units": "classes", "activation": "softmax"})]
    notes: list[str] = []

    class Notes(TrainingListener):
        def on_message(self, text):
            notes.append(text)

    settings = TrainingSettings(epochs=epochs, batch_size=batch_size, patience=0, restore_best=False)
    start = time.perf_counter()
    result = train_transfer(data, layers, settings, Notes(), cache_features=cached)
    total = time.perf_counter() - start
    epoch_s = [r["seconds"] for r in result.history]
    return {"epochs": epoch_s, "total": total, "notes": notes}


def run_keras(folder: Path, family: str, size: int, epochs: int, batch_size: int) -> dict:
    """The Keras guide's recipe: a frozen base model called in inference mode, a new head, fit."""
    import keras
    import tensorflow as tf

    train_ds, val_ds = keras.utils.image_dataset_from_directory(
        folder, validation_split=0.2, subset="both", seed=1337, image_size=(size, size), batch_size=batch_size,
        label_mode="categorical", verbose=False)
    classes = len(train_ds.class_names)
    train_ds, val_ds = train_ds.prefetch(tf.data.AUTOTUNE), val_ds.prefetch(tf.data.AUTOTUNE)
    base_model = getattr(keras.applications, family)(include_top=False, weights=None, input_shape=(size, size, 3))
    base_model.trainable = False
    inputs = keras.Input(shape=(size, size, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs) if family == "MobileNetV2" else inputs
    x = base_model(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(), loss="categorical_crossentropy", metrics=["accuracy"])
    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    start = time.perf_counter()
    model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=[Timer()], verbose=0)
    return {"epochs": times, "total": time.perf_counter() - start, "notes": []}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="MobileNetV3Small", choices=["MobileNetV3Small", "EfficientNetB0",
                                                                     "MobileNetV2"])
    ap.add_argument("--per-class", type=int, default=30)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()

    from cnndesk.core.library_warnings import hide_library_warnings

    hide_library_warnings()
    from cnndesk.core.data.dataset import DatasetConfig, load_dataset
    from cnndesk.core.data.images import Preprocessing

    folder = ensure_dataset(None, args.per_class, size=args.image_size)
    data = load_dataset(folder, DatasetConfig(Preprocessing((args.image_size, args.image_size)), val_split=0.2))
    print(f"{args.family} at {args.image_size}x{args.image_size}, {len(data.train_index)} training and "
          f"{len(data.val_index)} validation images, batch {args.batch_size}, {args.epochs} epochs, "
          f"{args.rounds} rounds in alternating order")
    variants = {
        "cached": lambda: run_cnndesk(data, args.family, args.epochs, args.batch_size, True),
        "through": lambda: run_cnndesk(data, args.family, args.epochs, args.batch_size, False),
        "keras": lambda: run_keras(folder, args.family, args.image_size, args.epochs, args.batch_size),
    }
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    order = list(variants)
    for round_ in range(args.rounds):
        for name in (order if round_ % 2 == 0 else order[::-1]):
            run = variants[name]()
            runs[name].append(run)
            print(f"round {round_ + 1} {name:8s} epochs {', '.join(f'{s:.2f}' for s in run['epochs'])} s; "
                  f"run {run['total']:.1f} s")
            for note in run["notes"]:
                if "backbone" in note:
                    print(f"    log: {note}")
    medians = {name: statistics.median(s for r in rs for s in (r["epochs"][1:] or r["epochs"])) for name, rs in
               runs.items()}
    print("\nmedian epoch time, epochs 2+:")
    for name, m in medians.items():
        print(f"  {name:8s} {m:8.3f} s")
    print(f"through / cached: {medians['through'] / medians['cached']:.1f}x")
    print(f"keras / cached:   {medians['keras'] / medians['cached']:.1f}x")
    print(f"keras / through:  {medians['keras'] / medians['through']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
