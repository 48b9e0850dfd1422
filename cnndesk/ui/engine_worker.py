"""The engine thread's jobs: ``EngineWorker``, which holds the current model and its inspector.

Each public method of ``EngineWorker`` is a job that ``Engine.submit`` runs in the engine thread
(the only thread that imports TensorFlow); ``Job`` is one submitted call, carrying its own cancel
flag. How the thread and the GUI side work: ``engine``.
"""

from __future__ import annotations

import threading
import traceback
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

from PySide6.QtCore import QObject, Signal, Slot

from ..core import fsutil
from ..core.app_log import log
from ..core.errors import UserError
from ..core.tasks import TaskState


#: A dropped image's maps may cost one more forward pass after its prediction (which then comes from a plain
#: pass, sooner) when the pass that taps them took at most this long: the maps then still follow within the
#: viewer's 100 ms. Slower models answer both from the tapping pass (docs/inspection.md).
SECOND_PASS_SECONDS = 0.06


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
    on_partial: Callable[[Any], None] | None = None  # a first part of the answer, before the whole of it
    task: TaskState = field(default_factory=TaskState)

    @property
    def name(self) -> str:
        return self.method.__name__


class EngineWorker(QObject):
    """Runs jobs in the engine thread. Holds the current model and its inspector.

    Its public methods are the jobs; each runs in the engine thread only.
    """

    ready = Signal(dict)  # versions and devices, once TensorFlow is imported
    done = Signal(object, object)  # Job, result
    failed = Signal(object, str)  # Job, message
    partial = Signal(object, object)  # Job, the first part of its answer (``send_partial``)
    batch = Signal(object)  # BatchReport
    epoch = Signal(object)  # EpochReport
    message = Signal(str)  # a sentence for the training log (which stopping rules apply)
    warned = Signal(str)
    probe_frame = Signal(object)  # a ProbeFrame, while a run records its probes

    def __init__(self):
        super().__init__()
        self.model = None
        self.inspector = None
        self.previous = None  # (model, inspector) of the run before the current model's, to bring back
        self._pool = None  # ModelPool: models replaced by a newer one, reused by later runs (docs/memory.md)
        self.reuse_models = True  # False: every run builds and traces a new model (for measurements)
        self.stock_spares = True  # False: stock_pool does nothing (for measurements)
        self._job: Job | None = None  # the job running now, for ``send_partial``
        self._run_files: dict[str, str] = {}  # run id -> its weights in the scratch folder (keep_run)
        self._run_probes: dict[str, tuple[str, dict]] = {}  # run id -> its recording's scratch folder, summary
        self._scratch = None  # a temporary folder for runs' weights before a save, made when first needed
        self._recordings = weakref.WeakKeyDictionary()  # model -> the ProbeRecording of its training

    @Slot(object)
    def run(self, job: Job) -> None:
        try:
            kwargs = dict(job.kwargs, task=job.task) if getattr(job.method, "cancellable", False) else job.kwargs
            self._job = job
            result = job.method(self, *job.args, **kwargs)
        except UserError as e:
            self.failed.emit(job, str(e))
            return
        except MemoryError:
            self.failed.emit(job, "Out of memory. Use a smaller image size, batch size or model.")
            return
        except Exception as e:  # report, never kill the thread
            detail = "".join(traceback.format_exception_only(type(e), e)).strip()
            log.exception("%s failed", getattr(job.method, "__name__", "a job"))
            self.failed.emit(job, f"Unexpected error: {detail[:500]}")
            return
        finally:
            self._job = None
        self.done.emit(job, result)

    def send_partial(self, payload) -> None:
        """Answer the running job's ``on_partial`` now with ``payload``; the job goes on to its whole answer.

        For answers whose first part a person waits for (the prediction) and whose rest takes longer (the maps).
        """
        if self._job is not None and self._job.on_partial is not None:
            self.partial.emit(self._job, payload)

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
        from ..core.library_warnings import import_tensorflow

        self._install_warning_hook()
        tf = import_tensorflow()
        import keras

        from ..core.training.devices import available_devices

        info = {"tensorflow": tf.__version__, "keras": keras.__version__, "devices": available_devices()}
        self.ready.emit(info)
        return info

    @cancellable
    def train(self, data, layers, settings, augment=(), class_weights=False, continue_training=False,
              initial_epoch=0, probes=(), probe_every_batches=0, run_id: str | None = None, *,
              task: TaskState) -> Any:
        """Train a new model (or the current one, continuing); it becomes current with its inspector.

        ``probes`` (image files) are recorded after every epoch, and every ``probe_every_batches``
        batches when above 0 (``core.probes``); each frame is also sent as ``probe_frame``.
        With ``run_id``, the new model is also kept as that run (``keep_run``) in the same job: the answer's
        ``kept`` is what ``keep_run`` returns, or None with ``kept_error`` saying why it could not be written
        (the trained model stays current either way).
        """
        from ..core.training.model_pool import ModelPool, return_freed_memory
        from ..core.training.progress import TrainingListener
        from ..core.training.fitting import train

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
        recorder = self._probe_recorder(data, probes, model, initial_epoch if continue_training else 0,
                                        probe_every_batches)
        result = train(data, layers, settings, Listener(), task, model=model, augment=augment,
                       class_weights=class_weights, initial_epoch=initial_epoch if continue_training else 0,
                       pool=self._pool, callbacks=(recorder.callback(),) if recorder else ())
        self._keep_recording(result.model, recorder)
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
        result.kept, result.kept_error = None, None
        if run_id is not None:
            try:
                result.kept = self.keep_run(run_id)
            except (OSError, UserError) as e:
                result.kept_error = str(e)
        return_freed_memory()
        return result

    @cancellable
    def stock_pool(self, data, layers, settings, *, task: TaskState) -> bool:
        """While nobody waits: trace a spare model for the next run of ``layers``, so Train starts at once.

        Submitted when the engine would otherwise be idle; a Train pressed meanwhile cancels it, and it
        returns at once when that happened before it started (tracing itself cannot be interrupted).
        """
        from ..core.training.model_pool import ModelPool

        if task.is_interruption_requested() or not (self.reuse_models and self.stock_spares):
            return False
        if self._pool is None:
            self._pool = ModelPool()
        return self._pool.stock(data, layers, settings)

    def save_project(self, folder, project) -> str:
        from ..core.project.store import save_project

        project.runs = [r if r.file else r.at(self._run_files.get(r.id)) for r in project.runs]
        project.runs = [self._with_kept_probes(r) for r in project.runs]
        probes = self._recordings.get(self.model) if self.model is not None else None
        return str(save_project(folder, project, self.model, probes=probes))

    def restore_previous(self) -> bool:
        """Swap the current model with the previous run's (so that doing it again swaps them back)."""
        if self.previous is None:
            raise UserError("There is no previous model to bring back.")
        (self.model, self.inspector), self.previous = self.previous, (self.model, self.inspector)
        return True

    def open_project(self, folder) -> dict:
        from ..core.project.store import open_project

        project, model = open_project(folder)
        probes = self._open_probes(folder) if model is not None else None
        # the inspector first: a model it refuses leaves the current and previous runs as they were
        inspector = self._inspector_for(model, project.class_names, project.preprocessing) if model else None
        if inspector is not None:
            inspector.warm_up()  # before anything changes: a model that fails here leaves the current one
        self._retire_previous()
        if model is not None:
            self._set_model(model, inspector)
            if probes is not None:
                self._recordings[model] = probes
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
        from ..core.data.images import recognise_pixels
        from ..core.model.inspection import Inspector
        from ..core.model.loading import load_model_with_labels

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
        """Export the current model with the class names the viewer shows (a labels file, and inside the file)."""
        from ..core.model.export import export_model

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

    def predict_files(self, paths, k=5, look_inside: dict | None = None) -> list[dict]:
        """Top-k for image files, with the prepared input and a picture to show (each file decoded once).

        With ``look_inside`` (keyword arguments of ``inspect``) and one file, the prediction comes from the
        pass that also taps the activation maps, and the answer carries them ("inspection", without the heat
        map): the viewer shows the prediction and the selected layer's grid together, after one forward
        pass instead of two.
        """
        ins = self._need_inspector()
        if look_inside is not None and len(paths) == 1 and ins.has_maps:
            return [self._predict_and_look(paths[0], k, look_inside)]
        out = []
        for result in ins.predict_files(paths, k=k):
            if isinstance(result, tuple):
                out.append({"path": result[0], "error": result[1]})
            else:
                out.append({"path": result.path, "top": result.top, "probabilities": result.probabilities,
                            "image": result.image, "display": result.display})
        return out

    def _predict_and_look(self, path, k, look_inside: dict) -> dict:
        from ..core.data.images import decode_for_viewing

        ins = self.inspector
        try:
            picture, prepared = decode_for_viewing(path, ins.preprocessing)
        except UserError as e:
            return {"path": str(path), "error": str(e)}
        def prediction(probs) -> dict:
            return {"path": str(path), "top": ins.top_k(probs, k), "probabilities": probs, "image": prepared,
                    "display": picture}

        # the prediction goes to the viewer as soon as it is known; the maps follow. When the pass that taps
        # every map is quick, the prediction comes from a plain pass first (a small model's taps cost a large
        # share of its forward pass); else from the tapping pass itself, so that the maps do not wait for two.
        taps = ins.maps_pass_seconds
        if taps is not None and taps <= SECOND_PASS_SECONDS:
            self.send_partial([prediction(ins.probabilities(prepared)[0])])
            inspection = self.inspect(prepared, with_cam=False, **look_inside)
        else:
            inspection = self.inspect(prepared, with_cam=False, **look_inside,
                                      on_probabilities=lambda probs: self.send_partial([prediction(probs)]))
        return dict(prediction(inspection["probabilities"]), inspection=inspection)

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
                shown_channels=0, first_channels=0, with_cam=True, on_probabilities=None) -> dict:
        """Activation maps of every conv/pool layer, and a heat map (``Inspector.gradcam``'s method), for one
        prepared image. (``cam_method``, not ``method``: that is ``Engine.submit``'s job argument.)

        ``with_cam=False`` leaves the heat map out ("cam" None; "cam_layer" still says which layer it would
        be at), for a caller that shows the maps first and asks for the heat map (a backward pass) next.

        The maps' pictures the viewer shows first are coloured here too, so that the GUI thread only turns
        them into pixmaps ("pictures": layer name -> (channels, H, W, 3) uint8): the first ``shown_channels``
        of ``shown_layer`` (a layer it does not have: the first convolution, the one a viewer shows first) and
        the first ``first_channels`` of every other layer. ``on_probabilities``: ``Inspector.activation_maps``'s.
        """
        import numpy as np

        ins = self._need_inspector()
        maps, probs = ins.activation_maps(image, on_probabilities)
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
        from ..core.model.pictures import colorize_channels

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
        x, y = data.rows(data.val_index), data.labels[data.val_index]  # read chunk by chunk, never whole
        if len(y) == 0:
            raise UserError("The validation split is empty: set a validation split above 0 to evaluate.")
        return ins.evaluate(x, y, [data.paths[i] for i in data.val_index])

    # -- the current model -------------------------------------------------------
    @staticmethod
    def _inspector_for(model, class_names, preprocessing):
        """The viewer's ``Inspector`` for ``model`` (raises when the model cannot be inspected); changes nothing."""
        from ..core.training.probes import inspector_for

        # a pooled model keeps its inspector: its tf.functions read the new weights, nothing is traced again
        return inspector_for(model, class_names, preprocessing)

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

    # -- training runs (core.runs) -------------------------------------------------
    def keep_run(self, run_id: str) -> dict:
        """Write the current model, just trained as run ``run_id``, and its probe recording to the scratch folder.

        A run's weights and recording must outlive the model in memory (only the current and the previous
        run's models are held, docs/memory.md) until a save puts them into the project. Returns "file" (the
        weights), "probe_dir" (the recording's folder) and "probes" (``core.probes.recording_summary``), both
        None when its training recorded no probes.
        """
        from ..core.training.runs import RUN_ID

        if self.model is None:
            raise UserError("There is no trained model to keep.")
        if not RUN_ID.match(run_id):
            raise UserError(f"{run_id!r} is not a run id.")
        folder = self._scratch_folder() / run_id
        folder.mkdir(exist_ok=True)
        path = folder / "model.keras"
        with fsutil.replacing(path) as tmp:
            self.model.save(tmp)
        self._run_files[run_id] = str(path)
        kept = {"file": str(path), "probe_dir": None, "probes": None}
        recording = self._recordings.get(self.model)
        if recording is not None:
            from ..core.training.probes import recording_summary
            from ..core.training.runs import PROBES_DIR

            kept["probe_dir"] = str(recording.save(folder / PROBES_DIR))
            kept["probes"] = recording_summary(recording)
            self._run_probes[run_id] = (kept["probe_dir"], kept["probes"])
        return kept

    def restore_run(self, path, class_names, preprocessing, probe_dir=None) -> dict:
        """Make the run whose weights are in ``path`` current; the current model becomes the previous run's.

        ``probe_dir`` (the run's probe recording) becomes the restored model's recording, the one
        ``probe_recording`` gives; a recording that cannot be read is left out, saying so. Nothing changes
        when the weights cannot be loaded or inspected.
        """
        from ..core.model.loading import load_keras_model

        model = load_keras_model(path)
        inspector = self._inspector_for(model, list(class_names), preprocessing)
        inspector.warm_up()  # before anything changes: a model that fails here leaves the current one
        recording = self._run_recording(probe_dir)
        self._retire_previous()
        if self.model is not None:
            self.previous = (self.model, self.inspector)
            self.model = self.inspector = None
        self._set_model(model, inspector)
        if recording is not None:
            self._recordings[model] = recording
        else:
            self._recordings.pop(model, None)
        return {"has_maps": inspector.has_maps, "output_note": inspector.output_note,
                "probe_frames": len(recording.frames) if recording is not None else None}

    def _run_recording(self, probe_dir):
        """The recording in a run's folder ``probe_dir`` (None: none); an unreadable one is left out, saying so."""
        from ..core.training.probes import ProbeRecording

        if not probe_dir:
            return None
        try:
            return ProbeRecording.load(probe_dir)
        except UserError as e:
            self.warned.emit(f"The run's probe recording was left out: {e}")
            return None

    def _with_kept_probes(self, run):
        """``run`` with the recording ``keep_run`` wrote for it, when it does not name one yet (a save that
        came before the answer of ``keep_run`` reached the runs list)."""
        kept = self._run_probes.get(run.id)
        if run.probe_dir or kept is None:
            return run
        return run.with_probes(run.probes if run.probes is not None else kept[1], kept[0])

    def _scratch_folder(self):
        """The session's temporary folder for runs not yet saved, removed when the worker goes."""
        import shutil
        import tempfile
        import weakref
        from pathlib import Path

        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="cnndesk-runs-"))
            weakref.finalize(self, shutil.rmtree, str(self._scratch), True)
        return self._scratch

    # -- probe recordings (core.probes) ------------------------------------------------
    def probe_recording(self):
        """A copy of the current model's ``ProbeRecording``, or None when its training recorded none."""
        recording = self._recordings.get(self.model) if self.model is not None else None
        return recording.copy() if recording is not None else None

    def _open_probes(self, folder):
        """The recording saved with a project's model; a damaged one is left out (saying so), the project opens."""
        from ..core.errors import ProjectError
        from ..core.project.store import open_probes

        try:
            return open_probes(folder)
        except ProjectError as e:
            self.warned.emit(f"The probe recording was left out: {e}")
            return None

    def _probe_recorder(self, data, paths, model, initial_epoch: int, every_batches: int):
        """The recorder for a run with probe image ``paths`` (None without); continuing extends the model's own."""
        from ..core.training.probes import known_labels, load_probes, ProbeRecorder, ProbeRecording

        if not paths:
            return None
        probes = load_probes(list(paths), data.preprocessing, data.class_names, known_labels(data))
        recording = self._recordings.get(model) if model is not None else None
        if recording is None or not recording.follows(probes, data.class_names):
            recording = ProbeRecording(probes, data.class_names)
        return ProbeRecorder(recording, data.preprocessing, initial_epoch=initial_epoch, every_batches=every_batches,
                             on_frame=self.probe_frame.emit)

    def _keep_recording(self, model, recorder) -> None:
        """Remember ``recorder``'s recording as ``model``'s (a pooled model reused without probes has none)."""
        if recorder is not None:
            self._recordings[model] = recorder.recording
            if recorder.recording.note:
                self.message.emit(recorder.recording.note)
        else:
            self._recordings.pop(model, None)

    # -- data quality ------------------------------------------------------------
    @cancellable
    def score_labels(self, data, layers, settings, folds=0, epochs=None, progress=None, *, task: TaskState):
        """Out-of-sample probabilities for finding mislabelled images (``core.quality.LabelScores``).

        Validation images are scored by the current model when it was trained on these
        classes; with ``folds`` >= 2 the training images too, each by one of ``folds``
        retrains (of ``epochs``, by default the settings' epochs) that did not see it (the current model is left as it is). ``progress``
        (a ``core.quality.ProgressNote``) receives how far the retrains are. Returns None when
        cancelled.
        """
        import numpy as np

        from ..core.errors import Cancelled
        from ..core.training.model_pool import return_freed_memory
        from ..core.quality.label_scores import LabelScores, out_of_fold_probabilities, VALIDATION

        empty = np.zeros(0, np.int64)
        scores = LabelScores(empty, np.zeros((0, data.num_classes), np.float32), np.zeros(0, dtype=object))
        ins = self.inspector
        if ins is not None and list(ins.class_names) == list(data.class_names) and len(data.val_index):
            probs = ins.chunked_probabilities(data.rows(data.val_index))  # read chunk by chunk, never whole
            scores = LabelScores(np.asarray(data.val_index), probs, np.full(len(data.val_index), VALIDATION, object),
                                 [f"{len(data.val_index)} validation images scored by the current model"])
        elif len(data.val_index):
            scores.notes.append("Validation images not scored: there is no model trained on these classes.")
        if folds >= 2:
            report = progress.report if progress is not None else None
            try:
                scores = scores.merged(out_of_fold_probabilities(data, layers, settings, folds, epochs, task, report))
            except Cancelled:
                return None
            finally:
                return_freed_memory()
        else:
            scores.notes.append("Training images not scored (turn on the retrains to score them).")
        return scores

    @cancellable
    def map_dataset(self, data, distance, doubtful_rows=(), progress=None, *, task: TaskState):
        """The map of ``data`` as the current model sees it (``core.work.dataset_map.DatasetMap``).

        ``progress`` (a ``core.quality.ProgressNote``) receives how far it is; the rows in ``doubtful_rows`` (label
        scores' candidates) are marked likely mislabelled. Returns None when cancelled.
        """
        from ..core.errors import Cancelled
        from ..core.tasks import ReportingTaskState
        from ..core.work.dataset_map import dataset_map

        ins = self._need_inspector()
        if list(ins.class_names) != list(data.class_names):
            raise UserError("The dataset's classes differ from the model's; map the dataset it was trained on.")
        if data.preprocessing.input_shape != ins.preprocessing.input_shape:
            raise UserError("The dataset is read at another size or colour than the model takes; set them back to "
                            "map it.")
        state = task if progress is None else ReportingTaskState(
            status=lambda text: progress.report(progress.percent, text),
            progress=lambda percent: progress.report(percent, progress.text), stopped_by=task)
        try:
            return dataset_map(self.model, data, distance, doubtful_rows, state)
        except Cancelled:
            return None
