"""An ensemble: several trained models of the same inputs and classes averaged into one Keras model.

The ensemble is a functional model: one shared image input, each member a
sub-model called on it (named ``member_1``, ``member_2``, …), and a
``keras.layers.Average`` of their probabilities as the output. It is a plain
Keras model of built-in layers, so it saves as ``.keras``, opens in Keras' safe
mode and exports to every format of :mod:`.export` like any other; the viewer
looks inside one member at a time (:func:`.taps.trace_taps`'s ``member``).

Keras is imported inside the functions: the window reads which runs are ensembles without loading it.
"""

from __future__ import annotations

#: the name of the ensemble model, and the prefix of its members' names
ENSEMBLE_NAME = "ensemble"
MEMBER_PREFIX = "member_"
AVERAGE_NAME = "average"


def build_ensemble(members):
    """One model whose output is the mean of ``members``' outputs (each the probabilities of the same classes).

    The members keep their weights; each is wrapped under its own name (``member_1``…), since a functional
    model's layers need distinct names and the members of a repeated training are all built alike.

    Raises:
        ValueError: fewer than two members, or members that take other inputs or give other outputs.
    """
    import keras

    members = list(members)
    if len(members) < 2:
        raise ValueError("an ensemble needs at least two models")
    shape = tuple(members[0].inputs[0].shape[1:])
    classes = members[0].outputs[0].shape[-1]
    for m in members[1:]:
        if tuple(m.inputs[0].shape[1:]) != shape or m.outputs[0].shape[-1] != classes:
            raise ValueError("the models of an ensemble must take the same images and give the same classes")
    image = keras.Input(shape=shape, name="image")
    outputs = []
    for i, member in enumerate(members, 1):
        inner = keras.Input(shape=shape, name=f"{MEMBER_PREFIX}{i}_image")
        named = keras.Model(inner, member(inner), name=f"{MEMBER_PREFIX}{i}")
        outputs.append(named(image))
    return keras.Model(image, keras.layers.Average(name=AVERAGE_NAME)(outputs), name=ENSEMBLE_NAME)


def is_ensemble(model) -> bool:
    """Whether ``model`` is an ensemble as :func:`build_ensemble` makes one: models averaged on one input."""
    import keras

    layers = [l for l in getattr(model, "layers", []) if type(l).__name__ != "InputLayer"]
    return (len(layers) >= 3 and isinstance(layers[-1], keras.layers.Average)
            and all(isinstance(l, keras.Model) for l in layers[:-1]))


def ensemble_members(model) -> list:
    """The members of an ensemble, in order (empty for any other model)."""
    import keras

    if not is_ensemble(model):
        return []
    return [l for l in model.layers if isinstance(l, keras.Model)]


def member_names(model) -> list[str]:
    """The names of an ensemble's members ("member_1", …), as the viewer's member chooser lists them."""
    return [m.name for m in ensemble_members(model)]
