"""How a run is seeded: the same seed gives the same run whatever ran before it, without emptying TensorFlow's caches.

A run's seed decides its initial weights and dropout masks (Keras draws the
seed of each initializer and dropout layer from Python's ``random``), the
order of its images and its augmentation (the ``tf.data`` shuffle and the
augmentation layers are given the seed explicitly, ``core.data.pipeline``),
and anything drawn from NumPy's global generator.

``keras.utils.set_random_seed`` would seed all of that and TensorFlow's global
seed too, and TensorFlow empties its caches of instantiated functions and
kernels each time its global seed is set (``tf.random.set_seed``): the next
step of a model whose train step was traced long before is then instantiated
again, its graph optimised and its oneDNN kernels created again, about 0.25
CPU-seconds on the first batch of every run, five times a later batch
(docs/training-speed.md). So ``seed_run`` sets TensorFlow's global seed only
when it is not ``TENSORFLOW_SEED`` already (once per process, unless other code
changed it); the shuffle's own seed, the run's, makes runs with different
seeds differ.
"""

from __future__ import annotations

import random

import numpy as np

#: TensorFlow's global seed during runs; the default seed (``TrainingSettings.seed``), so that runs with it
#: shuffle as they did when each run set TensorFlow's global seed to its own seed
TENSORFLOW_SEED = 1337


def seed_run(seed: int) -> None:
    """Seed Python's and NumPy's generators with ``seed``, and TensorFlow's global seed to ``TENSORFLOW_SEED``
    unless it is that already (setting it empties TensorFlow's caches of compiled steps)."""
    import tensorflow as tf

    random.seed(seed)
    np.random.seed(seed)
    # get_seed(op_seed) gives (global seed, op seed); without a global seed, TensorFlow's default one instead
    if tf.compat.v1.random.get_seed(0)[0] != TENSORFLOW_SEED:
        tf.random.set_seed(TENSORFLOW_SEED)
