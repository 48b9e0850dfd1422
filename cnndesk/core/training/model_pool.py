"""Compiled models kept for reuse, so that a long session does not grow run after run.

Every new Keras model traces new ``tf.function``\\ s the first time ``fit``
runs it (the train step and the validation step). With TensorFlow 2.21 the
graphs of those traces are never freed, not even when the model is deleted
and ``keras.backend.clear_session()`` is called: about 7-10 MB per training
run (see docs/memory.md). A model that was already trained keeps its traced
functions, and ``fit`` on it traces nothing new.

``ModelPool`` holds models that their owner no longer needs. ``train`` asks it
for one compiled for the same layers, input, classes, optimizer and loss;
the model gets the weights a freshly built model would have had (same seed,
same values) and its optimizer is reset to the state it had before its first
step, so the run trains exactly as it would on a new model, only without
tracing anything again.
"""

from __future__ import annotations

import json
import random
from collections import OrderedDict

from ..model.architecture import build_model, compile_model
from .devices import distribution_scope, several_devices
from .precision import choose_precision, policy_during
from .seeding import seed_run

#: how many models' initial values the pool remembers (one per layer stack and seed last trained)
INITIAL_VALUES_KEPT = 2

#: spares the app keeps traced for the layers shown, so that no press of Train waits for one: the engine holds
#: the current model and the one it replaced (``EngineWorker.held``), so the 1st, 2nd and 3rd presses on a stack
#: each take a spare, and from the 4th on the model held before goes back to the pool as each run ends. With
#: three traced while the app is idle, nothing needs tracing between runs (docs/training-speed.md)
SPARES_AHEAD = 3

#: the attribute of a pooled model that holds its key and its optimizer's initial state
_TAG = "_cnndesk_pool_tag"


class ModelPool:
    """Trained models their owner gave back, ready to be reset and trained again.

    Args:
        capacity: models kept in all; the one given back longest ago is dropped
            beyond it. Defaults to 4.

    A model given back with ``give_back`` belongs to the pool: its owner must
    not use it again (a later run overwrites its weights).
    """

    def __init__(self, capacity: int = 4):
        self.capacity = capacity
        self._free: OrderedDict[int, object] = OrderedDict()
        self.reused = 0  # runs that got a pooled model instead of tracing a new one
        self.compiled = 0  # models compiled (each one traces its train and test steps once)
        # (layer graph, Python random state) -> initial variable values of a model built then, random state after
        self._initial: OrderedDict[tuple, tuple[list, tuple]] = OrderedDict()
        self.values_remembered = 0  # pooled runs whose initial values came from memory instead of a new build

    def __len__(self) -> int:
        return len(self._free)

    def give_back(self, model) -> None:
        """Keep ``model`` for a later run on the same layers; the caller drops it."""
        tag = _tag(model)
        if tag is None or tag["graph"] is None:
            return  # not built by ``train`` (e.g. opened from a file): no layer stack to match
        self._free.pop(id(model), None)
        self._free[id(model)] = model
        while len(self._free) > self.capacity:
            self._free.popitem(last=False)

    def clear(self) -> None:
        self._free.clear()

    def _take(self, graph: str, compiled: tuple):
        for mid, model in reversed(self._free.items()):
            tag = _tag(model)
            if tag["graph"] == graph and tag["compiled"] == compiled:
                del self._free[mid]
                return model
        return None

    def prepare(self, model, layers, input_shape, num_classes, settings, times=None):
        """The compiled model to train: ``model`` to continue, else a pooled or a new one.

        Called inside the device scope, in place of ``build_model`` + ``compile_model``.
        ``times`` (a ``progress.StartTimes``), when given, gets the ``model`` mark
        once the model has its weights, before it is compiled or its optimizer reset.
        """
        mark = times.mark if times is not None else (lambda stage: None)

        graph, compiled = _key(layers, input_shape, num_classes, settings)
        if model is not None:  # continue training: a new optimizer state, as compile would give
            tag = _tag(model)
            mark("model")
            if tag is not None and tag["compiled"] == compiled:
                _reset_optimizer(model, settings.learning_rate)
                return model
            self._compile(model, settings, tag["graph"] if tag else None, compiled)
            return model
        pooled = self._take(graph, compiled)
        if pooled is None:
            fresh = self._build(layers, input_shape, num_classes, graph)
            mark("model")
            self._compile(fresh, settings, graph, compiled)
            return fresh
        _assign_variables(pooled, self._initial_values(layers, input_shape, num_classes, graph))
        mark("model")
        _reset_optimizer(pooled, settings.learning_rate)
        self.reused += 1
        return pooled

    def _build(self, layers, input_shape, num_classes, graph):
        """A new model, its initial values remembered for ``_initial_values``."""
        key = (graph, random.getstate())
        model = build_model(layers, input_shape, num_classes)
        self._initial[key] = ([v.numpy() for v in model.variables], random.getstate())
        self._initial.move_to_end(key)
        while len(self._initial) > INITIAL_VALUES_KEPT:
            self._initial.popitem(last=False)
        return model

    def _initial_values(self, layers, input_shape, num_classes, graph) -> list:
        """The variable values, random-seed state included, a model built now would start with.

        They depend only on the layers and on Python's random state (Keras
        draws the seed of each initializer and seed generator from it, and
        ``train`` seeds it first), so a run with the seed of an earlier one
        takes them from memory instead of building a model again, and leaves
        the random state where the build would have left it.
        """
        remembered = self._initial.get((graph, random.getstate()))
        if remembered is None:
            return [v.numpy() for v in self._build(layers, input_shape, num_classes, graph).variables]
        values, after = remembered
        random.setstate(after)
        self.values_remembered += 1
        return values

    def has_spare(self, layers, input_shape, num_classes, settings) -> bool:
        """Whether a run of ``layers`` with ``settings`` would find a model here (and trace nothing)."""
        return self.spares(layers, input_shape, num_classes, settings) > 0

    def spares(self, layers, input_shape, num_classes, settings) -> int:
        """How many models here a run of ``layers`` with ``settings`` could take."""
        graph, compiled = _key(layers, input_shape, num_classes, settings)
        return sum(_tag(m)["graph"] == graph and _tag(m)["compiled"] == compiled for m in self._free.values())

    def stock(self, data, layers, settings, keep: int = 1) -> bool:
        """Put a traced spare model for a run of ``layers`` on ``data`` here, unless ``keep`` are here already.

        Tracing a new model's train step is most of the time from Train to the
        first batch, and its validation step most of the first epoch's extra
        time (docs/training-speed.md). This does both now, on one batch, so
        that a later ``train`` on the same layers, input, classes, optimizer,
        loss and device takes the spare and traces nothing. Meant for moments
        when nobody waits (the GUI's engine when it has nothing else to do);
        it takes as long as the tracing it saves later. Runs on several GPUs
        never take a pooled model, so nothing is stocked for them.

        The app keeps ``SPARES_AHEAD`` so that presses of Train one right after
        another never need a spare traced between them.

        Returns:
            whether a spare was made (False: ``keep`` were here already, or several GPUs).
        """
        from .fitting import trace_steps

        if several_devices(settings.device) or self.spares(layers, data.preprocessing.input_shape,
                                                          data.num_classes, settings) >= keep:
            return False
        graph, compiled = _key(layers, data.preprocessing.input_shape, data.num_classes, settings)
        with distribution_scope(settings.device), policy_during(choose_precision(settings.precision, settings.device)):
            # seeded as ``train`` seeds before it builds: the run that takes the spare finds its initial values here
            seed_run(settings.seed)
            model = self._build(layers, data.preprocessing.input_shape, data.num_classes, graph)
            self._compile(model, settings, graph, compiled)
            trace_steps(model, data, settings.batch_size)
        self.give_back(model)
        return True

    def _compile(self, model, settings, graph, compiled) -> None:
        compile_model(model, settings)
        optimizer = model.optimizer
        optimizer.build(model.trainable_variables)
        state = [v.numpy() for v in optimizer.variables]
        setattr(model, _TAG, {"graph": graph, "compiled": compiled, "optimizer": state, "attached": {}})
        self.compiled += 1


def _key(layers, input_shape, num_classes, settings) -> tuple[str, tuple]:
    """(graph, compiled): what a pooled model must share with a run to be reused for it."""
    graph = json.dumps({"layers": [spec.to_json() for spec in layers], "input": list(input_shape),
                        "classes": int(num_classes)}, sort_keys=True)
    return graph, (settings.optimizer, settings.loss, settings.device,
                   choose_precision(settings.precision, settings.device).policy)


def attachments(model) -> dict:
    """A dict that lives as long as ``model`` stays pooled, for things built on it (an inspector)."""
    tag = _tag(model)
    return tag["attached"] if tag is not None else {}


def _tag(model):
    return getattr(model, _TAG, None) if model is not None else None


def _assign_variables(model, values: list) -> None:
    variables = model.variables
    if len(variables) != len(values) or any(tuple(v.shape) != tuple(x.shape) for v, x in zip(variables, values)):
        raise ValueError("the pooled model does not match the freshly built one")
    for v, x in zip(variables, values):
        v.assign(x)


def _reset_optimizer(model, learning_rate: float) -> None:
    """The optimizer's state before its first step (iterations, moments), with ``learning_rate``."""
    import numpy as np

    optimizer = model.optimizer
    for v, value in zip(optimizer.variables, _tag(model)["optimizer"]):
        v.assign(value)
    optimizer.learning_rate = np.float32(learning_rate)
    model.stop_training = False


def return_freed_memory() -> None:
    """Ask glibc to give memory freed by a finished run back to the system (``malloc_trim``).

    A run stopped in the middle of an epoch leaves freed blocks scattered over
    the allocator's arenas (the input pipeline's threads allocate in their own);
    without this the resident size of cancelled runs crept up by 0.7-6 MB per run
    although no object stayed alive (docs/memory.md). Does nothing off glibc.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        return
    trim(0)
