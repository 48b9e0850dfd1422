"""A calibration temperature folded into the model's own weights, for exports.

Dividing the logit layer's kernel and bias by the temperature T divides the
logits by T, so the model's softmax (or sigmoid) gives the calibrated
probabilities with no new layer (:func:`temperature_folded`).
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np

from ..errors import UserError
from .inspection import activation_name
from .taps import last_layer

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


@contextlib.contextmanager
def temperature_folded(model, temperature: float | None):
    """Within the block, ``model`` computes ``softmax(z / temperature)``: its logit layer's kernel and bias are
    divided by the temperature, and put back exactly as they were afterwards.

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

