"""The random changes training may make to its images, shared by both tf.data pipelines."""

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
