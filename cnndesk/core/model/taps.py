"""The model's graph rebuilt so that its convolution and pooling outputs can be read.

:class:`~.inspection.Inspector` asks one compiled model for the class scores
and every conv/pool layer's output at once. :func:`trace_taps` rebuilds the
model's graph for that: a chain (a Sequential, or a Functional whose layers
form one line) on a fresh ``keras.Input``, layer by layer, looking inside the
models nested in it; a branching Functional model through its own graph. A
reloaded Sequential's ``layer.output`` is stale and gives no gradients (see
docs/tensorflow-notes.md), hence the rebuild.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras

from .ensemble import ensemble_members

_TAP_TYPES = ("Conv", "Pool")


def is_tap(layer) -> bool:
    """Whether ``layer``'s output is shown as activation maps: a convolution or a (non-global) pooling."""
    name = type(layer).__name__
    return any(t in name for t in _TAP_TYPES) and "Global" not in name


def is_chain(model) -> bool:
    """Whether ``model`` can be called layer by layer: a Sequential, or a Functional of one line of layers."""
    if isinstance(model, keras.Sequential):
        return True
    # a Functional model whose layers form one chain can be rebuilt the same way
    try:
        for layer in model.layers[1:]:
            if len(layer._inbound_nodes) != 1 or len(layer._inbound_nodes[0].input_tensors) != 1:
                return False
    except AttributeError:
        return False
    return True


@dataclass
class Taps:
    """What a graph rebuild collects: the conv/pool outputs, their chooser names and their layers."""

    tensors: list = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    layers: list = field(default_factory=list)

    def add(self, tensor, name: str, layer) -> None:
        if is_tap(layer) and len(tensor.shape) == 4:
            self.tensors.append(tensor)
            self.names.append(name)
            self.layers.append(layer)


def call_model(model, x, prefix: str, taps: Taps):
    """Call ``model`` on ``x`` layer by layer, collecting its conv/pool outputs (named ``prefix + name``).

    A chain (a Sequential, or a Functional whose layers form one line) is called
    layer by layer on ``x``, descending into the models nested in it, whose
    layers are named ``backbone/layer``. A branching Functional model (a ResNet
    backbone, say) is called once through a model that also returns its own
    conv/pool layers' outputs; its graph is intact, unlike a reloaded
    Sequential's (docs/tensorflow-notes.md).

    Returns:
        (output, the input of the last layer called): the last layer's input is
        the class scores' source when that layer is a softmax or sigmoid.
    """
    if is_chain(model):
        penultimate = x
        for layer in model.layers:
            if type(layer).__name__ == "InputLayer":
                continue
            if isinstance(layer, keras.Model):
                x, penultimate = call_model(layer, x, f"{prefix}{layer.name}/", taps)
            else:
                penultimate = x
                x = layer(x)
                taps.add(x, prefix + layer.name, layer)
        return x, penultimate
    inner = [l for l in model.layers if is_tap(l) and len(l.output.shape) == 4]
    outs = keras.Model(model.inputs[0], [l.output for l in inner] + [model.outputs[0]])(x)
    for layer, tensor in zip(inner, outs[:-1]):
        taps.add(tensor, prefix + layer.name, layer)
    return outs[-1], None


def last_layer(model):
    """The layer that makes the model's output, inside nested models."""
    last = model.layers[-1]
    while isinstance(last, keras.Model) and last.layers:
        last = last.layers[-1]
    return last


@dataclass
class TappedGraph:
    """A model's graph, rebuilt: its input, its conv/pool outputs, its output, and where the scores come from.

    ``penultimate`` is the input of the last layer (the class scores' source
    when that layer is a softmax or sigmoid), or None when the graph does not
    give it; ``last`` is the layer that makes the output, inside nested models.
    """

    inputs: object
    taps: Taps
    output: object
    penultimate: object
    last: object


def trace_taps(model, member: int = 0) -> TappedGraph:
    """Rebuild ``model``'s graph, collecting its conv/pool outputs (see the module docstring).

    An ensemble (:mod:`.ensemble`) is rebuilt member by member on one input and averaged again; only the
    member numbered ``member`` (from 0) is tapped, its layers named ``member_2/conv2d`` and so on. Its output is
    the ensemble's, so a heat map shows what in that member's maps moves the averaged probability; the class
    scores come from the averaged probabilities (no ``penultimate``), and ``last`` is the member's last layer
    (which says the outputs are probabilities).
    """
    shape = tuple(model.inputs[0].shape[1:])
    taps = Taps()
    members = ensemble_members(model)
    if members:
        if not 0 <= member < len(members):
            raise ValueError(f"the ensemble has {len(members)} members; there is no member {member + 1}")
        inp = keras.Input(shape=shape, name="image")
        outs = []
        for i, m in enumerate(members):
            outs.append(call_model(m, inp, f"{m.name}/", taps)[0] if i == member else m(inp))
        return TappedGraph(inp, taps, model.layers[-1](outs), None, last_layer(members[member]))
    last = last_layer(model)
    if is_chain(model):
        inp = keras.Input(shape=shape, name="image")
        x, penultimate = call_model(model, inp, "", taps)
    else:  # models nested in a branching model are not looked inside
        inp = model.inputs[0]
        for layer in model.layers:
            if is_tap(layer):
                taps.add(layer.output, layer.name, layer)
        x = model.outputs[0]
        scores_layer = (keras.layers.Dense, keras.layers.Activation, keras.layers.Softmax)
        penultimate = last.input if last is model.layers[-1] and isinstance(last, scores_layer) else None
    return TappedGraph(inp, taps, x, penultimate, last)
