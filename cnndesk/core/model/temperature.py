"""A calibration temperature folded into the model's own weights, for exports.

Dividing the logit layer's kernel and bias by the temperature T divides the
logits by T, so the model's softmax (or sigmoid) gives the calibrated
probabilities with no new layer (:func:`temperature_folded`).

An ensemble (:mod:`.ensemble`) averages its members' probabilities ``p``; its
temperature is fitted on ``log p`` (:mod:`cnndesk.core.work.trust`), which no
weight holds, so its export ends with ``softmax(log p / T)`` written out in
Keras' own operations: a logarithm, a ``Rescaling`` by ``1 / T`` and a
``Softmax`` (:func:`tempered_ensemble`), which every format and Keras' safe mode read.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np

from ..errors import UserError
from .ensemble import is_ensemble
from .inspection import activation_name
from .taps import last_layer

#: the smallest averaged probability whose logarithm a tempered ensemble takes (0 would give -inf)
TINY = 1e-37

def logit_layer(model):
    """The Dense layer whose outputs are the model's logits (its last layer, or the one before a final Softmax or
    Activation layer), or None."""
    last = last_layer(model)
    if isinstance(last, keras.layers.Dense):
        return last
    if type(last).__name__ in ("Softmax", "Activation") and last is model.layers[-1] and len(model.layers) > 1:
        before = model.layers[-2]
        if isinstance(before, keras.layers.Dense) and activation_name(before) in ("linear", ""):
            return before
    return None


def tempered_ensemble(model, temperature: float):
    """A model computing ``softmax(log(p) / temperature)`` of the ensemble ``model``'s averaged probabilities ``p``
    (its members and their weights shared, not copied)."""
    image = keras.Input(shape=tuple(model.inputs[0].shape[1:]), name="image")
    log_p = keras.ops.log(keras.ops.maximum(model(image), TINY))
    scaled = keras.layers.Rescaling(1.0 / float(temperature), name="over_temperature")(log_p)
    return keras.Model(image, keras.layers.Softmax(name="calibrated")(scaled), name=f"{model.name}_calibrated")


@contextlib.contextmanager
def temperature_folded(model, temperature: float | None):
    """Within the block, the model yielded computes ``softmax(z / temperature)``: ``model`` itself, its logit
    layer's kernel and bias divided by the temperature and put back exactly as they were afterwards; for an
    ensemble, :func:`tempered_ensemble` (``model`` unchanged).

    Dividing a Dense layer's weights by T divides its outputs, the logits, by T,
    so the softmax (or sigmoid) after it gives the calibrated probabilities
    with no new layer: every export format stays as it was. The model must not
    be used elsewhere meanwhile (cnndesk exports on the thread that owns it).

    Raises:
        UserError: the model has no Dense layer making its logits.
    """
    if temperature is None or float(temperature) == 1.0:
        yield model
        return
    if is_ensemble(model):
        yield tempered_ensemble(model, temperature)
        return
    layer = logit_layer(model)
    if layer is None:
        raise UserError("This model's logits do not come from a Dense layer, so its temperature cannot be folded "
                        "into the export; export it without calibration.")
    weights = [layer.kernel] + ([layer.bias] if layer.use_bias else [])
    saved = [np.array(w.numpy()) for w in weights]
    try:
        for w, value in zip(weights, saved):
            w.assign(value / np.float32(temperature))
        yield model
    finally:
        for w, value in zip(weights, saved):
            w.assign(value)

