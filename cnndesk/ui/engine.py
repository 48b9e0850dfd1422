"""The one thread that owns TensorFlow.

``Engine`` (GUI side) sends jobs to ``EngineWorker`` (living in its own
``QThread``) through a queued signal; the worker runs them one after another
and answers with signals. Exactly this thread imports TensorFlow/Keras:
importing it from two threads at once deadlocked in every trial (docs/tensorflow-notes.md).

A job is a name and keyword arguments; its handler is ``EngineWorker.job_<name>``.
An exception in a job comes back as ``failed`` with a readable message, never
as an uncaught exception in the thread. Warnings raised in a job are caught
there and forwarded as ``warned``.
"""

from __future__ import annotations

import itertools
import os
import threading
import traceback
import warnings
from typing import Any, Callable

from PySide6.QtCore import QObject, QThread, Signal, Slot

from ..core.errors import UserError
from ..core.tasks import TaskState


class _EngineThread(QThread):
    """A QThread whose event loop runs inside a Python ``run``.

    With a plain ``QThread``, each queued slot call gets a fresh Python thread
    state that is destroyed when the slot returns; TensorFlow keeps its eager
    context in thread-local storage, so a tensor made in a later job than the
    one that imported TensorFlow segfaulted (seen with TF 2.21, PySide6 6.11).
    Running ``exec()`` from Python keeps one thread state for the thread's life.
    """

    def run(self) -> None:
        self.exec()


class EngineWorker(QObject):
    """Runs jobs in the engine thread. Holds the current model and its inspector."""

    ready = Signal(dict)  # versions and devices, once TensorFlow is imported
    done = Signal(int, str, object)  # job id, job name, result
    failed = Signal(int, str, str)  # job id, job name, message
    batch = Signal(object)  # BatchReport
    epoch = Signal(object)  # EpochReport
    message = Signal(str)  # a sentence for the training log (which stopping rules apply)
    warned = Signal(str)

    def __init__(self):
        super().__init__()
        self.model = None
        self.inspector = None
        self.previous = None  # (model, inspector) of the run before the current model's, to bring back
        self.train_state: TaskState | None = None
        self._pool = None  # ModelPool: models replaced by a newer one, reused by later runs (docs/memory.md)
        self.reuse_models = True  # False: every run builds and traces a new model (for measurements)

    @Slot(int, str, object)
    def run(self, job_id: int, name: str, kwargs: dict) -> None:
        handler = getattr(self, f"job_{name}", None)
        try:
            if handler is None:
                raise RuntimeError(f"unknown engine job {name!r}")
            result = handler(**kwargs)
        except UserError as e:
            self.failed.emit(job_id, name, str(e))
            return
        except MemoryError:
            self.failed.emit(job_id, name, "Out of memory. Use a smaller image size, batch size or model.")
            return
        except Exception as e:  # report, never kill the thread
            detail = "".join(traceback.format_exception_only(type(e), e)).strip()
            traceback.print_exc()
            self.failed.emit(job_id, name, f"Unexpected error: {detail[:500]}")
            return
        self.done.emit(job_id, name, result)

    # -- jobs --------------------------------------------------------------
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

    def job_init(self) -> dict:
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

    def job_train(self, data, layers, settings, augment=(), class_weights=False, continue_training=False,
                  initial_epoch=0) -> Any:
        from ..core.training import TrainingListener, train

        worker = self

        class Listener(TrainingListener):
            def on_batch(self, report):
                worker.batch.emit(report)

            def on_epoch(self, report):
                worker.epoch.emit(report)

            def on_message(self, text):
                worker.message.emit(text)

        from ..core.model_pool import ModelPool, return_freed_memory

        if self._pool is None and self.reuse_models:
            self._pool = ModelPool()
        model = self.model if continue_training else None
        result = train(data, layers, settings, Listener(), self.train_state, model=model, augment=augment,
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
        return_freed_memory()
        return result

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
        """Make ``model`` current; the one it replaces goes back to the pool for later runs."""
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

    def job_save_project(self, folder, project):
        from ..core.project import save_project

        return str(save_project(folder, project, self.model))

    def job_restore_previous(self):
        """Swap the current model with the previous run's (so that doing it again swaps them back)."""
        if self.previous is None:
            raise UserError("There is no previous model to bring back.")
        (self.model, self.inspector), self.previous = self.previous, (self.model, self.inspector)
        return True

    def job_open_project(self, folder):
        from ..core.project import open_project

        project, model = open_project(folder)
        # the inspector first: a model it refuses leaves the current and previous runs as they were
        inspector = self._inspector_for(model, project.class_names, project.preprocessing) if model else None
        self._retire_previous()
        if model is not None:
            self._set_model(model, inspector)
            self.inspector.warm_up()
        else:
            self._drop_model()
        return {"project": project, "has_model": model is not None}

    def job_clear_model(self):
        """Forget the current model (File > New): a later save writes no model."""
        self._retire_previous()
        self._drop_model()

    def job_open_model(self, path):
        from ..core.inspection import Inspector
        from ..core.project import load_keras_model

        model = load_keras_model(path)
        inspector = Inspector(model)
        inspector.warm_up()
        self._retire_previous()
        self._drop_model()
        self.model, self.inspector = model, inspector
        return {"class_names": inspector.class_names, "preprocessing": inspector.preprocessing,
                "layers": inspector.layer_names}

    def job_export(self, fmt, out):
        from ..core.export import export_model

        if self.model is None:
            raise UserError("There is no trained model to export yet: train or open one first.")
        return str(export_model(self.model, fmt, out))

    def _need_inspector(self):
        if self.inspector is None:
            raise UserError("There is no trained model yet: train one or open a model first.")
        return self.inspector

    def job_set_class_names(self, names):
        ins = self._need_inspector()
        if len(names) != len(ins.class_names):
            raise UserError(f"The model has {len(ins.class_names)} classes; give as many names.")
        ins.class_names = list(names)
        return list(names)

    def job_predict_files(self, paths, k=5):
        ins = self._need_inspector()
        out = []
        for result in ins.predict_files(paths, k=k):
            if isinstance(result, tuple):
                out.append({"path": result[0], "error": result[1]})
            else:
                out.append({"path": result.path, "top": result.top, "probabilities": result.probabilities,
                            "image": ins.prepare(result.path)})
        return out

    def job_predict_arrays(self, images, labels=None, k=5):
        """Predict already prepared images (e.g. pasted ones); ``labels`` names them."""
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
                        "probabilities": probs, "image": arr})
        return out

    def job_inspect(self, image, class_index=None, layer=None):
        """Activation maps of every conv/pool layer, and Grad-CAM, for one prepared image."""
        import numpy as np

        ins = self._need_inspector()
        maps, probs = ins.activation_maps(image)
        ci = int(np.argmax(probs)) if class_index is None else int(class_index)
        if layer not in ins.layer_names:  # None, or a layer of a previous model
            layer = ins.default_cam_layer
        cam = ins.gradcam(image, ci, layer)
        return {"maps": maps, "probabilities": probs, "class_index": ci, "cam": cam, "cam_layer": layer,
                "kernels": ins.first_layer_kernels(), "conv_layers": list(ins.conv_layer_names),
                "layers": list(ins.layer_names)}

    def job_gradcam(self, image, class_index, layer=None):
        ins = self._need_inspector()
        if layer not in ins.layer_names:
            layer = ins.default_cam_layer
        return {"cam": ins.gradcam(image, int(class_index), layer), "class_index": int(class_index),
                "cam_layer": layer}

    def job_evaluate(self, data):
        ins = self._need_inspector()
        if data.class_names != ins.class_names:
            raise UserError("The dataset's classes differ from the model's; evaluate on the dataset it was trained on.")
        x, y = data.subset(data.val_index)
        if len(y) == 0:
            raise UserError("The validation split is empty: set a validation split above 0 to evaluate.")
        return ins.evaluate(x, y, [data.paths[i] for i in data.val_index])


class Engine(QObject):
    """GUI-side handle of the engine thread.

    Call ``submit(name, on_done, on_error, **kwargs)``; the callbacks run on
    the GUI thread. With ``latest_only=True`` a result is dropped when a newer
    job of the same name was submitted after it (so a stale prediction never
    overwrites a newer one).
    """

    ready = Signal(dict)
    failed = Signal(str, str)  # job name, message: for jobs without their own error callback
    batch = Signal(object)
    epoch = Signal(object)
    message = Signal(str)
    warned = Signal(str)
    _submit = Signal(int, str, object)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._ids = itertools.count(1)
        self._callbacks: dict[int, tuple[Callable | None, Callable | None, str, bool]] = {}
        self._latest: dict[str, int] = {}
        self.is_ready = False
        self.info: dict = {}
        self.thread = _EngineThread()
        self.thread.setObjectName("cnndesk-engine")
        self.worker = EngineWorker()
        self.worker.moveToThread(self.thread)
        self._submit.connect(self.worker.run)
        self.worker.done.connect(self._on_done)
        self.worker.failed.connect(self._on_failed)
        self.worker.ready.connect(self._on_ready)
        self.worker.batch.connect(self._on_batch)
        self.worker.epoch.connect(self._on_epoch)
        self.worker.message.connect(self._on_message)
        self.worker.warned.connect(self._on_warned)
        self.thread.finished.connect(self.worker.deleteLater)
        self._stopped = False

    def start(self) -> None:
        self.thread.start()
        self.submit("init")

    # Cross-thread signals land in decorated slots only (PYSIDE-3124: plain
    # callables as receivers of another thread's signals crashed PySide6).
    @Slot(object)
    def _on_batch(self, report) -> None:
        self.batch.emit(report)

    @Slot(object)
    def _on_epoch(self, report) -> None:
        self.epoch.emit(report)

    @Slot(str)
    def _on_message(self, text: str) -> None:
        self.message.emit(text)

    @Slot(str)
    def _on_warned(self, text: str) -> None:
        self.warned.emit(text)

    @Slot(dict)
    def _on_ready(self, info: dict) -> None:
        self.is_ready = True
        self.info = info
        self.ready.emit(info)

    def submit(self, name: str, on_done: Callable | None = None, on_error: Callable | None = None,
               latest_only: bool = False, **kwargs) -> int:
        if self._stopped:
            return -1
        job_id = next(self._ids)
        self._callbacks[job_id] = (on_done, on_error, name, latest_only)
        if latest_only:
            self._latest[name] = job_id
        if name == "train":
            self.worker.train_state = TaskState()
        self._submit.emit(job_id, name, kwargs)
        return job_id

    def cancel_training(self) -> None:
        """Ask training to stop; ``fit`` returns within one batch."""
        state = self.worker.train_state
        if state is not None:
            state.request_interruption()

    def _take(self, job_id: int):
        cb = self._callbacks.pop(job_id, None)
        if cb is None:
            return None
        on_done, on_error, name, latest_only = cb
        if latest_only and self._latest.get(name) != job_id:
            return None
        return cb

    @Slot(int, str, object)
    def _on_done(self, job_id: int, name: str, result) -> None:
        cb = self._take(job_id)
        if cb and cb[0]:
            cb[0](result)

    @Slot(int, str, str)
    def _on_failed(self, job_id: int, name: str, message: str) -> None:
        cb = self._take(job_id)
        if cb is None:
            return
        if cb[1]:
            cb[1](message)
        else:
            self.failed.emit(name, message)

    def pending(self) -> int:
        return len(self._callbacks)

    def shutdown(self, timeout_ms: int = 30000) -> None:
        """Stop training, finish the current job, stop the thread. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self.cancel_training()
        self.thread.quit()
        self.thread.wait(timeout_ms)
