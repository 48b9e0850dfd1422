"""The one thread that owns TensorFlow.

``Engine`` (GUI side) sends jobs to ``EngineWorker`` (living in its own
``QThread``); the worker runs them one after another, in the order they were
submitted, and answers with signals. Exactly this thread imports
TensorFlow/Keras: importing it from two threads at once deadlocked in every
trial (docs/tensorflow-notes.md).

A job is a method of ``EngineWorker`` and its arguments::

    engine.submit(EngineWorker.predict_files, paths, k=3, on_done=show)

so a reader (or a tool) follows a job from the call to its code. Each job
carries its own ``TaskState``: ``engine.cancel(job)`` sets that job's cancel
flag, which only a job that takes a ``task`` argument (``@cancellable``) reads.
An exception in a job comes back as a readable message, never as an uncaught
exception in the thread. Warnings raised in a job are forwarded as ``warned``.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

from PySide6.QtCore import QObject, QThread, Signal, Slot

from ..core.errors import UserError
from ..core.tasks import TaskState


def cancellable(method: Callable) -> Callable:
    """Mark a job that takes ``task=`` (its ``TaskState``) and stops when the job is cancelled."""
    method.cancellable = True
    return method


@dataclass(eq=False)
class Job:
    """One submitted call of an ``EngineWorker`` method, with its answer callbacks (run on the GUI thread)."""

    id: int
    method: Callable
    args: tuple
    kwargs: dict
    on_done: Callable[[Any], None] | None = None
    on_error: Callable[[str], None] | None = None
    latest_only: bool = False
    task: TaskState = field(default_factory=TaskState)

    @property
    def name(self) -> str:
        return self.method.__name__


class _EngineThread(QThread):
    """A QThread whose event loop runs inside a Python ``run``.

    With a plain ``QThread``, each queued slot call gets a fresh Python thread
    state that is destroyed when the slot returns; TensorFlow keeps its eager
    context in thread-local storage, so a tensor made in a later job than the
    one that imported TensorFlow segfaulted (docs/tensorflow-notes.md).
    Running ``exec()`` from Python keeps one thread state for the thread's life.
    """

    def run(self) -> None:
        self.exec()


class EngineWorker(QObject):
    """Runs jobs in the engine thread. Holds the current model and its inspector.

    Its public methods are the jobs; each runs in the engine thread only.
    """

    ready = Signal(dict)  # versions and devices, once TensorFlow is imported
    done = Signal(object, object)  # Job, result
    failed = Signal(object, str)  # Job, message
    batch = Signal(object)  # BatchReport
    epoch = Signal(object)  # EpochReport
    message = Signal(str)  # a sentence for the training log (which stopping rules apply)
    warned = Signal(str)

    def __init__(self):
        super().__init__()
        self.model = None
        self.inspector = None
        self.previous = None  # (model, inspector) of the run before the current model's, to bring back
        self._pool = None  # ModelPool: models replaced by a newer one, reused by later runs (docs/memory.md)
        self.reuse_models = True  # False: every run builds and traces a new model (for measurements)
        self.stock_spares = True  # False: stock_pool does nothing (for measurements)

    @Slot(object)
    def run(self, job: Job) -> None:
        try:
            kwargs = dict(job.kwargs, task=job.task) if getattr(job.method, "cancellable", False) else job.kwargs
            result = job.method(self, *job.args, **kwargs)
        except UserError as e:
            self.failed.emit(job, str(e))
            return
        except MemoryError:
            self.failed.emit(job, "Out of memory. Use a smaller image size, batch size or model.")
            return
        except Exception as e:  # report, never kill the thread
            detail = "".join(traceback.format_exception_only(type(e), e)).strip()
            traceback.print_exc()
            self.failed.emit(job, f"Unexpected error: {detail[:500]}")
            return
        self.done.emit(job, result)

    def _install_warning_hook(self) -> None:
        """Forward warnings raised in this thread as ``warned``; others go where they went.

        A hook, not ``warnings.catch_warnings``: that swaps process-wide state and
        is not thread-safe (the GUI and loader threads would lose their warnings).
        """
        engine_thread = threading.get_ident()
        previous = warnings.showwarning

        def showwarning(message, category, filename, lineno, file=None, line=None):
            if threading.get_ident() == engine_thread:
                if not issubclass(category, (DeprecationWarning, PendingDeprecationWarning)):
                    self.warned.emit(f"{category.__name__}: {message}")
            else:
                previous(message, category, filename, lineno, file, line)

        warnings.showwarning = showwarning

    # -- jobs ------------------------------------------------------------------
    def init(self) -> dict:
        """Import TensorFlow and Keras (the first job, submitted by ``Engine.start``)."""
        from ..core.library_warnings import tensorflow_log_lines_hidden

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        self._install_warning_hook()
        with tensorflow_log_lines_hidden():  # its C++ start-up lines come before TF_CPP_MIN_LOG_LEVEL counts
            import keras
            import tensorflow as tf

            from ..core.training import available_devices

            info = {"tensorflow": tf.__version__, "keras": keras.__version__, "devices": available_devices()}
        self.ready.emit(info)
        return info

    @cancellable
    def train(self, data, layers, settings, augment=(), class_weights=False, continue_training=False,
              initial_epoch=0, *, task: TaskState) -> Any:
        """Train a new model (or the current one, continuing); it becomes current with its inspector."""
        from ..core.model_pool import ModelPool, return_freed_memory
        from ..core.training import TrainingListener, train

        worker = self

        class Listener(TrainingListener):
            def on_batch(self, report):
                worker.batch.emit(report)

            def on_epoch(self, report):
                worker.epoch.emit(report)

            def on_message(self, text):
                worker.message.emit(text)

        if self._pool is None and self.reuse_models:
            self._pool = ModelPool()
        model = self.model if continue_training else None
        result = train(data, layers, settings, Listener(), task, model=model, augment=augment,
                       class_weights=class_weights, initial_epoch=initial_epoch if continue_training else 0,
                       pool=self._pool)
        try:  # first what can fail: until it succeeded, the current and previous runs stay as they were
            inspector = self._inspector_for(result.model, data.class_names, data.preprocessing)
        except Exception:
            if result.model is not self.model and self._pool is not None:
                self._pool.give_back(result.model)
            raise
        if not continue_training and self.model is not None and result.model is not self.model:
            # a new run never discards the last one: it becomes the previous run (to bring back), and
            # only the run before that goes to the pool, whose models get overwritten by later runs
            self._retire_previous()
            self.previous = (self.model, self.inspector)
            self.model = self.inspector = None
        self._set_model(result.model, inspector)
        result.model = None  # the model stays in this thread
        result.has_maps = inspector.has_maps
        result.output_note = inspector.output_note
        return_freed_memory()
        return result

    @cancellable
    def stock_pool(self, data, layers, settings, *, task: TaskState) -> bool:
        """While nobody waits: trace a spare model for the next run of ``layers``, so Train starts at once.

        Submitted when the engine would otherwise be idle; a Train pressed meanwhile cancels it, and it
        returns at once when that happened before it started (tracing itself cannot be interrupted).
        """
        from ..core.model_pool import ModelPool

        if task.is_interruption_requested() or not (self.reuse_models and self.stock_spares):
            return False
        if self._pool is None:
            self._pool = ModelPool()
        return self._pool.stock(data, layers, settings)

    def save_project(self, folder, project) -> str:
        from ..core.project import save_project

        return str(save_project(folder, project, self.model))

    def restore_previous(self) -> bool:
        """Swap the current model with the previous run's (so that doing it again swaps them back)."""
        if self.previous is None:
            raise UserError("There is no previous model to bring back.")
        (self.model, self.inspector), self.previous = self.previous, (self.model, self.inspector)
        return True

    def open_project(self, folder) -> dict:
        from ..core.project import open_project

        project, model = open_project(folder)
        # the inspector first: a model it refuses leaves the current and previous runs as they were
        inspector = self._inspector_for(model, project.class_names, project.preprocessing) if model else None
        if inspector is not None:
            inspector.warm_up()  # before anything changes: a model that fails here leaves the current one
        self._retire_previous()
        if model is not None:
            self._set_model(model, inspector)
        else:
            self._drop_model()
        return {"project": project, "has_model": model is not None,
                "has_maps": inspector.has_maps if inspector is not None else False,
                "output_note": inspector.output_note if inspector is not None else ""}

    def clear_model(self) -> None:
        """Forget the current model (File > New): a later save writes no model."""
        self._retire_previous()
        self._drop_model()

    def open_model(self, path) -> dict:
        """Load a model file; its class names come from the file (or a labels.txt beside it) when they fit."""
        from ..core.images import recognise_pixels
        from ..core.inspection import Inspector
        from ..core.model_loading import load_model_with_labels

        model, names = load_model_with_labels(path)
        inspector = Inspector(model)
        if names is not None and len(names) == len(inspector.class_names):
            inspector.class_names = list(names)
        inspector.warm_up()
        self._retire_previous()
        self._drop_model()
        self._set_model(model, inspector)
        _, pixels_why = recognise_pixels([(l.name, type(l).__name__) for l in model.layers])
        return {"class_names": inspector.class_names, "preprocessing": inspector.preprocessing,
                "pixels_why": pixels_why, "layers": inspector.layer_names, "has_maps": inspector.has_maps,
                "output_note": inspector.output_note}

    def export(self, fmt, out) -> str:
        """Export the current model with the class names the viewer shows (labels.txt, and inside the file)."""
        from ..core.export import export_model

        if self.model is None:
            raise UserError("There is no trained model to export yet: train or open one first.")
        names = self.inspector.class_names if self.inspector is not None else None
        return str(export_model(self.model, fmt, out, names))

    def set_class_names(self, names) -> list[str]:
        ins = self._need_inspector()
        if len(names) != len(ins.class_names):
            raise UserError(f"The model has {len(ins.class_names)} classes; give as many names.")
        ins.class_names = list(names)
        return list(names)

    def set_preprocessing(self, preprocessing):
        """Feed the current model's pixels as ``preprocessing`` says from now on (its size and colour must fit)."""
        ins = self._need_inspector()
        if preprocessing.input_shape != ins.preprocessing.input_shape:
            raise UserError("The model takes other images; only the pixel mode can change.")
        ins.preprocessing = preprocessing
        return preprocessing

    def predict_files(self, paths, k=5) -> list[dict]:
        """Top-k for image files, with the prepared input and a picture to show (each file decoded once)."""
        ins = self._need_inspector()
        out = []
        for result in ins.predict_files(paths, k=k):
            if isinstance(result, tuple):
                out.append({"path": result[0], "error": result[1]})
            else:
                out.append({"path": result.path, "top": result.top, "probabilities": result.probabilities,
                            "image": result.image, "display": result.display})
        return out

    def predict_arrays(self, images, labels=None, k=5) -> list[dict]:
        """Predict in-memory images (pasted or dropped as image data); ``labels`` names them."""
        ins = self._need_inspector()
        out = []
        for i, img in enumerate(images):
            try:
                arr = ins.prepare(img)
            except UserError as e:
                out.append({"path": labels[i] if labels else None, "error": str(e)})
                continue
            probs = ins.probabilities(arr)[0]
            out.append({"path": labels[i] if labels else None, "top": ins.top_k(probs, k),
                        "probabilities": probs, "image": arr, "display": img})
        return out

    def inspect(self, image, class_index=None, layer=None, cam_method="hirescam", shown_layer=None,
                shown_channels=0, first_channels=0, with_cam=True) -> dict:
        """Activation maps of every conv/pool layer, and a heat map (``Inspector.gradcam``'s method), for one
        prepared image. (``cam_method``, not ``method``: that is ``Engine.submit``'s job argument.)

        ``with_cam=False`` leaves the heat map out ("cam" None; "cam_layer" still says which layer it would
        be at), for a caller that shows the maps first and asks for the heat map (a backward pass) next.

        The maps' pictures the viewer shows first are coloured here too, so that the GUI thread only turns
        them into pixmaps ("pictures": layer name -> (channels, H, W, 3) uint8): the first ``shown_channels``
        of ``shown_layer`` (a layer it does not have: the first convolution, the one a viewer shows first) and
        the first ``first_channels`` of every other layer.
        """
        import numpy as np

        ins = self._need_inspector()
        maps, probs = ins.activation_maps(image)
        ci = int(np.argmax(probs)) if class_index is None else int(class_index)
        cam = None
        if ins.has_maps:
            if layer not in ins.layer_names:  # None, or a layer of a previous model
                layer = ins.default_cam_layer
            cam = ins.gradcam(image, ci, layer, cam_method) if with_cam else None
        else:
            layer = None
        return {"maps": maps, "probabilities": probs, "class_index": ci, "cam": cam, "cam_layer": layer,
                "has_maps": ins.has_maps, "pictures": self._pictures(maps, shown_layer, shown_channels, first_channels),
                "kernels": ins.first_layer_kernels(), "conv_layers": list(ins.conv_layer_names),
                "layers": list(ins.layer_names)}

    def _pictures(self, maps, shown_layer, shown_channels, first_channels) -> dict:
        """The first channels of each layer's maps coloured (``inspect``); layers given 0 channels are left out."""
        from ..core.pictures import colorize_channels

        names = [n for n, _ in maps]
        if shown_layer not in names:
            conv = self.inspector.conv_layer_names
            shown_layer = conv[0] if conv else None
        counts = {n: shown_channels if n == shown_layer else first_channels for n in names}
        return {n: colorize_channels(m, count=counts[n]) for n, m in maps if counts[n] > 0}

    def gradcam(self, image, class_index, layer=None, cam_method="hirescam") -> dict:
        ins = self._need_inspector()
        if layer not in ins.layer_names:
            layer = ins.default_cam_layer
        return {"cam": ins.gradcam(image, int(class_index), layer, cam_method), "class_index": int(class_index),
                "cam_layer": layer, "cam_method": cam_method}

    def evaluate(self, data):
        ins = self._need_inspector()
        if data.class_names != ins.class_names:
            raise UserError("The dataset's classes differ from the model's; evaluate on the dataset it was trained on.")
        x, y = data.subset(data.val_index)
        if len(y) == 0:
            raise UserError("The validation split is empty: set a validation split above 0 to evaluate.")
        return ins.evaluate(x, y, [data.paths[i] for i in data.val_index])

    # -- the current model -------------------------------------------------------
    @staticmethod
    def _inspector_for(model, class_names, preprocessing):
        """The viewer's ``Inspector`` for ``model`` (raises when the model cannot be inspected); changes nothing."""
        from ..core.inspection import Inspector
        from ..core.model_pool import attachments

        # a pooled model keeps its inspector: its tf.functions read the new weights, nothing is traced again
        attached = attachments(model)
        inspector = attached.get("inspector")
        if inspector is None or inspector.preprocessing.input_shape != preprocessing.input_shape:
            inspector = Inspector(model, class_names, preprocessing)
            attached["inspector"] = inspector
        else:
            inspector.class_names = list(class_names)
            inspector.preprocessing = preprocessing
        return inspector

    def _set_model(self, model, inspector) -> None:
        """Make ``model`` and its ``inspector`` current together; the model it replaces goes to the pool."""
        self._drop_model(keep=model)
        self.model, self.inspector = model, inspector

    def _retire_previous(self) -> None:
        """Forget the previous run's model (it can no longer be brought back), giving it to the pool."""
        if self.previous is not None and self._pool is not None and self.previous[0] is not self.model:
            self._pool.give_back(self.previous[0])
        self.previous = None

    def _drop_model(self, keep=None) -> None:
        """Forget the current model (unless it is ``keep``), giving it back to the pool."""
        if self.model is not None and self.model is not keep and self._pool is not None:
            self._pool.give_back(self.model)
        self.model = self.inspector = None

    def _need_inspector(self):
        if self.inspector is None:
            raise UserError("There is no trained model yet: train one or open a model first.")
        return self.inspector


class Engine(QObject):
    """GUI-side handle of the engine thread.

    ``submit(EngineWorker.method, *args, on_done=…, on_error=…, **kwargs)``
    returns the ``Job``; the callbacks run on the GUI thread. With
    ``latest_only=True`` a result is dropped when a newer job of the same
    method was submitted after it (a stale prediction never overwrites a newer
    one). A failed job without ``on_error`` is announced by ``failed``.
    """

    ready = Signal(dict)
    failed = Signal(str, str)  # job name, message: for jobs without their own error callback
    batch = Signal(object)
    epoch = Signal(object)
    message = Signal(str)
    warned = Signal(str)
    _submit = Signal(object)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._ids = itertools.count(1)
        self._jobs: dict[int, Job] = {}
        self._latest: dict[Callable, int] = {}
        self.is_ready = False
        self.info: dict = {}
        self.worker_thread = _EngineThread()
        self.worker_thread.setObjectName("cnndesk-engine")
        self.worker = EngineWorker()
        self.worker.moveToThread(self.worker_thread)
        self._submit.connect(self.worker.run)
        self.worker.done.connect(self._on_done)
        self.worker.failed.connect(self._on_failed)
        self.worker.ready.connect(self._on_ready)
        self.worker.batch.connect(self._on_batch)
        self.worker.epoch.connect(self._on_epoch)
        self.worker.message.connect(self._on_message)
        self.worker.warned.connect(self._on_warned)
        self.worker_thread.finished.connect(self.worker.deleteLater)
        self._stopped = False

    def start(self) -> None:
        self.worker_thread.start()
        self.submit(EngineWorker.init)

    def submit(self, method: Callable, *args, on_done: Callable | None = None, on_error: Callable | None = None,
               latest_only: bool = False, **kwargs) -> Job | None:
        """Run ``method(worker, *args, **kwargs)`` in the engine thread after the jobs before it.

        Returns the job (to ``cancel`` it), or None once the engine has shut down.
        """
        if self._stopped:
            return None
        job = Job(next(self._ids), method, args, kwargs, on_done, on_error, latest_only)
        self._jobs[job.id] = job
        if latest_only:
            self._latest[method] = job.id
        self._submit.emit(job)
        return job

    def cancel(self, job: Job | None) -> None:
        """Ask ``job`` to stop; training returns within one batch. Jobs that are not cancellable finish."""
        if job is not None:
            job.task.request_interruption()

    def pending(self) -> int:
        """Jobs submitted whose answer has not reached the GUI thread yet."""
        return len(self._jobs)

    # Cross-thread signals land in decorated slots only (a plain callable as the
    # receiver of another thread's signal crashed PySide6: docs/tensorflow-notes.md).
    @Slot(object)
    def _on_batch(self, report) -> None:
        if not self._stopped:  # after shutdown a job still finishing reports to no one
            self.batch.emit(report)

    @Slot(object)
    def _on_epoch(self, report) -> None:
        if not self._stopped:
            self.epoch.emit(report)

    @Slot(str)
    def _on_message(self, text: str) -> None:
        if not self._stopped:
            self.message.emit(text)

    @Slot(str)
    def _on_warned(self, text: str) -> None:
        if not self._stopped:
            self.warned.emit(text)

    @Slot(dict)
    def _on_ready(self, info: dict) -> None:
        self.is_ready = True
        self.info = info
        self.ready.emit(info)

    def _take(self, job: Job) -> bool:
        """Forget ``job``; True when its answer is still wanted."""
        self._jobs.pop(job.id, None)
        if job.latest_only and self._latest.get(job.method) != job.id:
            return False
        return not self._stopped

    @Slot(object, object)
    def _on_done(self, job: Job, result) -> None:
        if self._take(job) and job.on_done:
            job.on_done(result)

    @Slot(object, str)
    def _on_failed(self, job: Job, message: str) -> None:
        if not self._take(job):
            return
        if job.on_error:
            job.on_error(message)
        else:
            self.failed.emit(job.name, message)

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """Cancel running jobs, finish the current one, stop the thread. Safe to call twice.

        Returns False (and says so on stderr) when the thread did not stop within ``timeout_ms``.
        """
        if self._stopped:
            return not self.worker_thread.isRunning()
        self._stopped = True
        for job in list(self._jobs.values()):
            job.task.request_interruption()
        self.worker_thread.quit()
        if self.worker_thread.wait(timeout_ms):
            return True
        print(f"cnndesk: the engine thread did not stop within {timeout_ms / 1000:.0f} s "
              "(a job is still running); quitting anyway.", file=sys.stderr)
        return False
