"""What both ``tf.data`` pipelines share (the in-memory one, :mod:`.pipeline`, and the on-disk one,
:mod:`.shards`): the random changes training may make to its images, and the tail that turns a stream of
rows into batches for ``fit``.
"""

from __future__ import annotations

from typing import Sequence

from ..errors import UserError

AUGMENTATIONS = ("flip", "rotate", "zoom", "contrast", "brightness")


def augmentation_layers(augment: Sequence[str], seed: int = 0):
    """A Keras Sequential of the chosen random preprocessing layers."""
    import keras

    unknown = set(augment) - set(AUGMENTATIONS)
    if unknown:
        raise UserError(f"Unknown augmentation {', '.join(sorted(unknown))}; choose from {', '.join(AUGMENTATIONS)}.")
    layers = []
    if "flip" in augment:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if "rotate" in augment:
        layers.append(keras.layers.RandomRotation(0.08, fill_mode="reflect", seed=seed))
    if "zoom" in augment:
        layers.append(keras.layers.RandomZoom(0.15, fill_mode="reflect", seed=seed))
    if "contrast" in augment:
        layers.append(keras.layers.RandomContrast(0.2, value_range=(0, 255), seed=seed))
    if "brightness" in augment:
        layers.append(keras.layers.RandomBrightness(0.15, value_range=(0, 255), seed=seed))
    return keras.Sequential(layers, name="augmentation")


def finish_batches(ds, batch_size: int, prepare, repeat: bool, augmented: bool):
    """Batch ``ds``, repeat it if asked, map each batch through ``prepare`` and prefetch.

    Batching comes before repeating, so each pass is one epoch of
    ``ceil(n / batch_size)`` batches with every image once. Autotune is off and
    the prefetch fixed: on small CPUs autotune stalled epoch starts by seconds
    (docs/tensorflow-notes.md). ``prepare`` runs on two threads when it
    augments (the random layers are the slow part), else on one.
    """
    import tensorflow as tf

    ds = ds.batch(batch_size)
    if repeat:
        ds = ds.repeat()
    ds = ds.map(prepare, num_parallel_calls=2 if augmented else 1)
    ds = ds.prefetch(2)
    options = tf.data.Options()
    options.autotune.enabled = False
    options.deterministic = True
    return ds.with_options(options)
