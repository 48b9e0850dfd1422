"""The tf.data pipeline from the uint8 image cache (in memory or on disk) to ``fit``."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .batches import augmentation_layers, finish_batches
from .shards import ShardedImages

def make_tf_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    batch_size: int,
    *,
    training: bool,
    seed: int = 0,
    augment: Sequence[str] = (),
    repeat: bool = False,
    index: np.ndarray | None = None,
):
    """The one pipeline from the uint8 cache to ``fit``.

    Batches of (float32 images in 0-255, one-hot labels), with static shapes
    (None, H, W, C) and (None, num_classes). Only row numbers flow through
    ``tf.data``: they are shuffled (in training: every pass, seeded) and
    batched, and each batch's images are gathered from ``images`` in NumPy.
    The cache is read in place, never copied, and no shuffle buffer holds
    images: for 1600 training images at 224x224 this took the pipeline from
    about +714 MiB to +63 MiB (docs/memory.md). The gather runs on the host (also under a
    ``tf.distribute`` strategy, which then splits each global batch). The
    augmentation layers run in training only, never in the saved model.
    Autotune is off and prefetch fixed: on small CPUs autotune stalled epoch
    starts by seconds (see docs/tensorflow-notes.md).

    When ``images`` is an on-disk cache (``shards.ShardedImages``), a
    training pipeline streams its shards instead (shard order shuffled,
    interleaved, a bounded shuffle buffer: ``OnDiskCache.dataset``), so that
    memory does not grow with the dataset; the other pipelines read their
    rows from the shards batch by batch, in the order of ``index``.

    Args:
        images: the uint8 cache, shape (N, H, W, C), e.g. ``LoadedDataset.images``
            (an ndarray, or an on-disk cache's ``ShardedImages``).
        labels: (N,) class ids.
        num_classes: length of the one-hot labels.
        batch_size: images per batch (the global batch under a strategy).
        training: shuffle every pass and apply ``augment``; when False the
            rows come in the order of ``index``.
        seed: seed of the shuffle and the augmentation. Defaults to 0.
        augment: names from ``AUGMENTATIONS``. Defaults to none.
        repeat: repeat forever (use with ``steps_per_epoch``) so ``fit`` keeps
            one iterator across epochs. Defaults to False.
        index: the rows of ``images``/``labels`` to use, e.g.
            ``LoadedDataset.train_index``. Defaults to all rows.

    Example::

        ds = make_tf_dataset(data.images, data.labels, data.num_classes, 32,
                             training=True, seed=1337, repeat=True, index=data.train_index)
    """
    import tensorflow as tf

    if isinstance(images, ShardedImages):
        rows = np.arange(len(labels)) if index is None else np.asarray(index, dtype=np.int64)
        if training and len(rows) > batch_size:  # stream the shards; a single batch is read row by row below
            return images.dataset(labels, rows, num_classes, batch_size, training=True, seed=seed,
                                  augment=augment, repeat=repeat)
    else:
        images = np.asarray(images)  # an ndarray passes through uncopied
    if images.ndim != 4 or len(images) != len(labels):
        raise ValueError(f"images must be (N, H, W, C) with one label each; got {images.shape} and "
                         f"{len(labels)} labels")
    with tf.device("/CPU:0"):  # the pipeline runs on the host; so does the layers' random state
        aug = augmentation_layers(augment, seed) if training and augment else None
    labels = np.asarray(labels, dtype=np.int32)  # (N,): small; ``images`` is never copied
    rows = np.arange(len(labels), dtype=np.int64) if index is None else np.asarray(index, dtype=np.int64)
    if rows.ndim != 1:
        raise ValueError(f"index must be one-dimensional; got shape {rows.shape}")
    if len(rows) and (rows.min() < 0 or rows.max() >= len(labels)):
        raise ValueError(f"index holds rows outside 0..{len(labels) - 1}")
    image_shape = tuple(int(d) for d in images.shape[1:])
    image_dtype = tf.as_dtype(images.dtype)

    ds = tf.data.Dataset.from_tensor_slices(rows)
    if training:
        ds = ds.shuffle(max(len(rows), 1), seed=seed, reshuffle_each_iteration=True)

    # TensorFlow keeps every function given to ``numpy_function`` for the life of the process (it ties it
    # to the eager context's global graph): ``gather`` reads the arrays through ``source``, which
    # ``release_tf_dataset`` empties, so that a dataset that is done with does not keep its images.
    source = [images, labels]

    def gather(batch_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # plain NumPy, called by tf.data on one of its threads; must not touch TensorFlow
        cached_images, cached_labels = source
        return cached_images[batch_rows], cached_labels[batch_rows]

    # no AutoGraph: nothing here needs it, and it re-reads source files (absent in a frozen app)
    @tf.autograph.experimental.do_not_convert
    def prepare(batch_rows):
        x, y = tf.numpy_function(gather, [batch_rows], (image_dtype, tf.int32), stateful=False,
                                 name="gather_cached_images")
        x = tf.ensure_shape(x, (None, *image_shape))
        y = tf.ensure_shape(y, (None,))
        x = tf.cast(x, tf.float32)
        if aug is not None:
            x = aug(x, training=True)
            x = tf.clip_by_value(x, 0.0, 255.0)
        return x, tf.one_hot(y, num_classes)

    ds = finish_batches(ds, batch_size, prepare, repeat, augmented=aug is not None)
    ds._cnndesk_source = source
    return ds


def release_tf_dataset(*datasets) -> None:
    """Let datasets made by :func:`make_tf_dataset` drop their arrays; they cannot be read after this.

    Without it the images stay in memory until the process ends, even when
    nothing else uses them (see :func:`make_tf_dataset`). ``None`` is ignored.
    """
    for ds in datasets:
        source = getattr(ds, "_cnndesk_source", None)
        if source is not None:
            source.clear()


def steps_for(n: int, batch_size: int) -> int:
    return max(1, math.ceil(n / batch_size))
