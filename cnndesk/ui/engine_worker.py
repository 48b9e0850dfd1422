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
import dataclasses
import gc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from PySide6.QtCore import QObject, Signal, Slot

from ..core import fsutil
from ..core.app_log import log
from ..core.errors import Cancelled, UserError
from ..core.training.probes import known_labels, load_probes
from ..core.training.runs import KeptRun, Run
from ..core.project.session import ModelInfo, ModelOpened, ProjectOpened, RunRestored, Runtime, Trained, TrainedGroup
from ..core.tasks import TaskState

if TYPE_CHECKING:  # core.inspection imports TensorFlow: only the jobs, in the engine thread, import it
    from ..core.model.inspection import HeatMap, Inspection, Seen
    from ..core.work.trust import Trust


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
    on_progress: Callable[[float], None] | None = None  # what the job reports through ``task`` (``Engine.submit``)
    on_status: Callable[[str], None] | None = None
    on_report: Callable[[Any], None] | None = None
    task: TaskState = field(default_factory=TaskState)  # the job's one progress and cancel channel

    @property
    def name(self) -> str:
        return self.method.__name__


class EngineWorker(QObject):
    """Runs jobs in the engine thread. Holds the current model and its inspector.

    Its public methods are the jobs; each runs in the engine thread only. Beside the current model it holds the
    model of the run that model replaced (``held``, by run id), so that bringing that run back is instant; any
    other run is read from its file (``restore_run``).
    """

    ready = Signal(object)  # the Runtime (versions and devices), once TensorFlow is imported
    done = Signal(object, object)  # Job, result
    failed = Signal(object, str)  # Job, message
    partial = Signal(object, object)  # Job, the first part of its answer (``send_partial``)
    progress = Signal(object, float)  # Job, percent: what the job reported through its TaskState
    status = Signal(object, str)  # Job, words
    reported = Signal(object, object)  # Job, a typed report (a BatchReport, EpochReport, ProbeFrame, log sentence)
    warned = Signal(str)

    def __init__(self):
        super().__init__()
        self.model = None
        self.inspector = None
        self.run_id: str | None = None  # the id of the run the current model is (None: a model from a file)
        self.held: dict[str, tuple] = {}  # run id -> (model, inspector) of the run the current model replaced
        self._pool = None  # ModelPool: models replaced by a newer one, reused by later runs (docs/memory.md)
        self.reuse_models = True  # False: every run builds and traces a new model (for measurements)
        self.stock_spares = True  # False: stock_pool does nothing (for measurements)
        self._job: Job | None = None  # the job running now, for ``send_partial``
        self._run_files: dict[str, str] = {}  # run id -> its weights in the scratch folder (keep_run)
        self._run_probes: dict[str, tuple[str, dict]] = {}  # run id -> its recording's scratch folder, summary
        self._scratch = None  # a temporary folder for runs' weights before a save, made when first needed
        self._recordings = weakref.WeakKeyDictionary()  # model -> the ProbeRecording of its training
        self._trusts = weakref.WeakKeyDictionary()  # model -> its core.work.trust.Trust (none: uncalibrated)
        self._heads = weakref.WeakKeyDictionary()  # model -> its core.work.trust.ModelHeads, made when first needed

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
    def init(self) -> Runtime:
        """Import TensorFlow and Keras (the first job, submitted by ``Engine.start``)."""
        from ..core.library_warnings import import_tensorflow

        self._install_warning_hook()
        tf = import_tensorflow()
        import keras

        from ..core.training.devices import available_devices

        info = Runtime(tf.__version__, keras.__version__, tuple(available_devices()))
        # TensorFlow's and Keras' objects live as long as the app: kept out of the garbage collector's walks, which
        # hold the interpreter's lock in every thread (a full one over them took 0.5 s, the window stalled with it)
        gc.freeze()
        self.ready.emit(info)
        return info

    @cancellable
    def train(self, data, layers, settings, augment=(), class_weights=False, continue_training=False,
              initial_epoch=0, probes=(), probe_every_batches=0, *, run: str, spec: tuple | None = None,
              task: TaskState) -> Trained:
        """Train a new model (or the current one, continuing) as run ``run``; it becomes current with its inspector.

        ``spec`` (layers, preset name, settings) is what the model is said to be trained with. Each batch, epoch
        and log sentence is reported through ``task`` (``core.training.progress.TaskReports``). ``probes`` (image files)
        are recorded after every epoch, and every ``probe_every_batches`` batches when above 0
        (``core.probes``); each frame is reported through ``task`` too. The new model is also kept as run ``run``
        (``keep_run``) in the same job: the answer's ``kept`` says where, or ``kept_error`` why it could not be
        written (the trained model stays current either way).
        """
        from ..core.training.model_pool import ModelPool, return_freed_memory
        from ..core.training.fitting import train

        if self._pool is None and self.reuse_models:
            self._pool = ModelPool()
        model = self.model if continue_training else None
        recorder = self._probe_recorder(data, probes, model, initial_epoch if continue_training else 0,
                                        probe_every_batches, task)
        result = train(data, layers, settings, None, task, model=model, augment=augment,
                       class_weights=class_weights, initial_epoch=initial_epoch if continue_training else 0,
                       pool=self._pool, callbacks=(recorder.callback(),) if recorder else ())
        self._keep_recording(result.model, recorder, task)
        try:  # first what can fail: until it succeeded, the current and the held runs stay as they were
            inspector = self._inspector_for(result.model, data.class_names, data.preprocessing)
        except Exception:
            if result.model is not self.model and self._pool is not None:
                self._pool.give_back(result.model)
            raise
        if not continue_training and self.model is not None and result.model is not self.model:
            # a new run never discards the last one: it is held (to bring back at once), and only the run
            # held before goes to the pool, whose models get overwritten by later runs
            self._hold_current()
        trust = self._measure_trust(result.model, data, task, self._heads_of(result.model, data.preprocessing))
        self._set_model(result.model, inspector, run, trust)
        kept, kept_error = None, None
        try:
            kept = self.keep_run(run)
        except (OSError, UserError) as e:
            kept_error = str(e)
        return_freed_memory()
        # the model stays in this thread
        return Trained(dataclasses.replace(result, model=None),
                       ModelInfo.trained(inspector, run, spec, self._before(), trust), kept, kept_error,
                       None if trust is None else trust.to_json())

    @staticmethod
    def _measure_trust(model, data, task: TaskState, heads):
        """The trust of a model just trained on ``data`` (``core.work.trust.measure_trust``: its temperature,
        calibration and novelty statistics, on the validation split), with progress; None when the user stopped
        the run first or meanwhile, or when it failed (the model stays, uncalibrated: the log says so)."""
        from ..core.work.trust import measure_trust

        if task.is_interruption_requested():
            task.report("Stopped before the confidences were calibrated: they are shown as the model gives them.")
            return None
        try:
            trust = measure_trust(model, data, task, heads=heads)
        except Cancelled:
            task.report("Stopped while calibrating the confidences: they are shown as the model gives them.")
            return None
        except Exception as e:  # the trained model matters more than its calibration: it stays, uncalibrated
            log.exception("measuring the trust of a trained model failed")
            task.report(f"The confidences could not be calibrated ({type(e).__name__}: {str(e)[:200]}); they are "
                        "shown as the model gives them.")
            return None
        for note in trust.notes:
            task.report(note)
        return trust

    @cancellable
    def train_repeats(self, data, layers, settings, config, count, keep="best", resplit=False, probes=(),
                      probe_every_batches=0, *, run_ids, ensemble_id=None, spec: tuple | None = None,
                      task: TaskState) -> TrainedGroup:
        """Train ×``count`` (``core.training.repeats``): each member's weights (and its recording of the ``probes``,
        image files, as ``train`` records them) written to the scratch folder as run ``run_ids[i]`` when it ends;
        the model kept (the best member's, with its recording, or the ensemble as run ``ensemble_id``, which has
        none) becomes current with its inspector. Reports go through ``task`` (a ``MemberStarted`` before each
        model, the probe frames as they come); Stop (``task``'s cancel) stops the model training now and trains
        no more."""
        from ..core.training.model_pool import return_freed_memory
        from ..core.training.repeat_runs import kept_run_id
        from ..core.training.repeats import train_repeats, trust_split, UNCALIBRATED_RESPLIT
        from ..core.training.runs import RUN_ID

        if not all(RUN_ID.match(r) for r in [*run_ids, *([ensemble_id] if ensemble_id else [])]):
            raise UserError("A run id is not one of cnndesk's.")
        kept_runs, errors = {}, []
        images = load_probes(list(probes), data.preprocessing, data.class_names, known_labels(data)) if probes else ()

        def write_member(i, member):
            try:
                kept_runs[run_ids[i]] = self._keep_files(member.result.model, member.recording, run_ids[i])
            except (OSError, UserError) as e:
                errors.append(str(e))

        repeats = train_repeats(data, layers, settings, config, count, keep=keep, resplit_each=resplit, state=task,
                                on_member=write_member, excluded_rows=_left_out(data), probes=images,
                                probe_every_batches=probe_every_batches)
        kept = kept_run_id(repeats, run_ids, ensemble_id)
        inspector = self._inspector_for(repeats.model, data.class_names, data.preprocessing)
        if self.model is not None and repeats.model is not self.model:
            self._hold_current()
        trust = None
        measured_on = trust_split(repeats)
        if measured_on is not None:  # the kept model's, as after one training (an ensemble's on its log-mean)
            trust = self._measure_trust(repeats.model, measured_on, task,
                                        self._heads_of(repeats.model, data.preprocessing))
        else:
            task.report(UNCALIBRATED_RESPLIT)
        self._set_model(repeats.model, inspector, kept, trust)
        if repeats.kept == "best" and repeats.members[repeats.best].recording is not None:
            self._recordings[repeats.model] = repeats.members[repeats.best].recording
        else:  # an ensemble was not trained epoch by epoch: its members' runs have their recordings
            self._recordings.pop(repeats.model, None)
        if repeats.kept == "ensemble":
            try:
                kept_runs[kept] = self._keep_files(repeats.model, None, kept)
            except (OSError, UserError) as e:
                errors.append(str(e))
        return_freed_memory()
        light = dataclasses.replace(repeats, model=None, members=[
            dataclasses.replace(m, result=dataclasses.replace(m.result, model=None), data=None, recording=None)
            for m in repeats.members])
        return TrainedGroup(light, ModelInfo.trained(inspector, kept, spec, self._before(), trust), kept, kept_runs,
                            errors[0] if errors else None, None if trust is None else trust.to_json())

    def _write_run(self, model, run_id: str) -> str:
        """Write ``model`` to the scratch folder as run ``run_id``'s weights (``keep_run`` for a model not current)."""
        folder = self._scratch_folder() / run_id
        folder.mkdir(exist_ok=True)
        path = folder / "model.keras"
        with fsutil.replacing(path) as tmp:
            model.save(tmp)
        self._run_files[run_id] = str(path)
        return str(path)

    @cancellable
    def stock_pool(self, data, layers, settings, *, task: TaskState) -> int:
        """While nobody waits: trace spare models for the next runs of ``layers`` (``SPARES_AHEAD``), so that
        Train starts at once, also when pressed right after a run. Returns how many it traced.

        Submitted when the engine would otherwise be idle; a Train pressed meanwhile cancels it: it stops
        before the next spare (tracing one cannot be interrupted), or at once when it had not started.
        """
        from ..core.training.model_pool import ModelPool, SPARES_AHEAD

        if not (self.reuse_models and self.stock_spares):
            return 0
        if self._pool is None:
            self._pool = ModelPool()
        made = 0
        while not task.is_interruption_requested() and self._pool.stock(data, layers, settings, keep=SPARES_AHEAD):
            made += 1
        return made

    def save_project(self, folder, project) -> str:
        from ..core.project.store import save_project

        project.runs = [r if r.file else r.at(self._run_files.get(r.id)) for r in project.runs]
        project.runs = [self._with_kept_probes(r) for r in project.runs]
        probes = self._recordings.get(self.model) if self.model is not None else None
        return str(save_project(folder, project, self.model, probes=probes))

    def open_project(self, folder) -> ProjectOpened:
        from ..core.project.store import open_project

        project, model = open_project(folder)
        probes = self._open_probes(folder) if model is not None else None
        # the inspector first: a model it refuses leaves the current and the held runs as they were
        inspector = self._inspector_for(model, project.class_names, project.preprocessing) if model else None
        if inspector is not None:
            inspector.warm_up()  # before anything changes: a model that fails here leaves the current one
        self._release_held()
        trust = None
        if model is not None:
            trust = self._run_trust(project.runs, project.run)
            self._set_model(model, inspector, project.run, trust)
            self._warm_heads(trust)
            if probes is not None:
                self._recordings[model] = probes
        else:
            self._drop_model()
        return ProjectOpened(project, ModelInfo.of_project(inspector, project, folder, trust)
                             if model is not None else None)

    def clear_model(self) -> None:
        """Forget the current model (File > New): a later save writes no model."""
        self._release_held()
        self._drop_model()

    def open_model(self, path) -> ModelOpened:
        """Load a model file; its class names come from the file (or a labels.txt beside it) when they fit."""
        from ..core.data.images import recognise_pixels
        from ..core.model.inspection import Inspector
        from ..core.model.loading import load_model_with_labels

        model, names = load_model_with_labels(path)
        inspector = Inspector(model)
        if names is not None and len(names) == len(inspector.class_names):
            inspector.class_names = list(names)
        inspector.warm_up()
        self._release_held()
        self._drop_model()
        self._set_model(model, inspector, None, None)
        _, pixels_why = recognise_pixels([(l.name, type(l).__name__) for l in model.layers])
        return ModelOpened(ModelInfo.of_file(inspector, path), pixels_why or "", tuple(inspector.layer_names))

    def export(self, fmt, out) -> str:
        """Export the current model with the class names the viewer shows (a labels file, and inside the file)."""
        from ..core.model.export import export_model

        if self.model is None:
            raise UserError("There is no trained model to export yet: train or open one first.")
        names = self.inspector.class_names if self.inspector is not None else None
        trust = self._trusts.get(self.model)  # the export gives the probabilities the app shows
        return str(export_model(self.model, fmt, out, names,
                                temperature=trust.temperature if trust is not None else None))  # 1 when declined

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

    def predict_files(self, paths, k=5, look_inside: dict | None = None) -> list[Seen]:
        """Top-k for image files, with the prepared input and a picture to show (each file decoded once).

        With ``look_inside`` (keyword arguments of ``inspect``) and one file, the prediction comes from the
        pass that also taps the activation maps, and the answer carries them (``inspection``, without the heat
        map): the viewer shows the prediction and the selected layer's grid together, after one forward
        pass instead of two.
        """
        from ..core.model.inspection import Seen

        ins = self._need_inspector()
        if look_inside is not None and len(paths) == 1 and ins.has_maps:
            return [self._predict_and_look(paths[0], k, look_inside)]
        out = []
        for result in ins.predict_files(paths, k=k):
            if isinstance(result, tuple):
                out.append(Seen(result[0], error=result[1]))
            else:
                out.append(Seen(result.path, tuple(result.top), result.probabilities, result.image, result.display,
                                **self._unlike(result.image)))
        return out

    def _predict_and_look(self, path, k, look_inside: dict) -> Seen:
        from ..core.data.images import decode_for_viewing
        from ..core.model.inspection import Seen

        ins = self.inspector
        try:
            picture, prepared = decode_for_viewing(path, ins.preprocessing)
        except UserError as e:
            return Seen(str(path), error=str(e))

        unlike = self._unlike(prepared)

        def prediction(probs, inspection=None) -> Seen:
            return Seen(str(path), tuple(ins.top_k(probs, k)), probs, prepared, picture, inspection=inspection,
                        **unlike)

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
        return prediction(inspection.probabilities, inspection)

    def predict_arrays(self, images, labels=None, k=5) -> list[Seen]:
        """Predict in-memory images (pasted or dropped as image data); ``labels`` names them."""
        from ..core.model.inspection import Seen

        ins = self._need_inspector()
        out = []
        for i, img in enumerate(images):
            try:
                arr = ins.prepare(img)
            except UserError as e:
                out.append(Seen(labels[i] if labels else None, error=str(e)))
                continue
            probs = ins.probabilities(arr)[0]
            out.append(Seen(labels[i] if labels else None, tuple(ins.top_k(probs, k)), probs, arr, img,
                            **self._unlike(arr)))
        return out

    def inspect(self, image, class_index=None, layer=None, cam_method="hirescam", shown_layer=None,
                shown_channels=0, first_channels=0, with_cam=True, on_probabilities=None, member=0) -> Inspection:
        """Activation maps of every conv/pool layer, and a heat map (``Inspector.gradcam``'s method), for one
        prepared image. (``cam_method``, not ``method``: that is ``Engine.submit``'s job argument.)

        ``with_cam=False`` leaves the heat map out (``cam`` None; ``cam_layer`` still says which layer it would
        be at), for a caller that shows the maps first and asks for the heat map (a backward pass) next.

        The maps' pictures the viewer shows first are coloured here too, so that the GUI thread only turns
        them into pixmaps (``pictures``: layer name -> (channels, H, W, 3) uint8): the first ``shown_channels``
        of ``shown_layer`` (a layer it does not have: the first convolution, the one a viewer shows first) and
        the first ``first_channels`` of every other layer. ``on_probabilities``: ``Inspector.activation_maps``'s.
        ``member``: for an ensemble, the member (from 0) whose maps are shown.
        """
        import numpy as np

        from ..core.model.inspection import Inspection

        ins = self._need_inspector()
        if ins.members:  # an ensemble: the maps of the member the viewer chose
            ins.choose_member(min(max(int(member), 0), len(ins.members) - 1))
        maps, probs = ins.activation_maps(image, on_probabilities)
        ci = int(np.argmax(probs)) if class_index is None else int(class_index)
        cam = None
        if ins.has_maps:
            if layer not in ins.layer_names:  # None, or a layer of a previous model
                layer = ins.default_cam_layer
            cam = ins.gradcam(image, ci, layer, cam_method) if with_cam else None
        else:
            layer = None
        return Inspection(maps, probs, ci, cam, layer, ins.has_maps,
                          self._pictures(maps, shown_layer, shown_channels, first_channels), ins.first_layer_kernels(),
                          list(ins.conv_layer_names), list(ins.layer_names))

    def _pictures(self, maps, shown_layer, shown_channels, first_channels) -> dict:
        """The first channels of each layer's maps coloured (``inspect``); layers given 0 channels are left out."""
        from ..core.model.pictures import colorize_channels

        names = [n for n, _ in maps]
        if shown_layer not in names:
            conv = self.inspector.conv_layer_names
            shown_layer = conv[0] if conv else None
        counts = {n: shown_channels if n == shown_layer else first_channels for n in names}
        return {n: colorize_channels(m, count=counts[n]) for n, m in maps if counts[n] > 0}

    def gradcam(self, image, class_index, layer=None, cam_method="hirescam") -> HeatMap:
        from ..core.model.inspection import HeatMap

        ins = self._need_inspector()
        member = (layer or "").split("/")[0]
        if member in ins.members:  # an ensemble's layers are named after their member: "member_2/conv2d"
            ins.choose_member(ins.members.index(member))
        if layer not in ins.layer_names:
            layer = ins.default_cam_layer
        return HeatMap(ins.gradcam(image, int(class_index), layer, cam_method), int(class_index), layer, cam_method)

    def evaluate(self, data):
        ins = self._need_inspector()
        if data.class_names != ins.class_names:
            raise UserError("The dataset's classes differ from the model's; evaluate on the dataset it was trained on.")
        x, y = data.rows(data.val_index), data.labels[data.val_index]  # read chunk by chunk, never whole
        if len(y) == 0:
            raise UserError("The validation split is empty: set a validation split above 0 to evaluate.")
        ev = ins.evaluate(x, y, [data.paths[i] for i in data.val_index])
        return dataclasses.replace(ev, calibration=self._calibration(x, y))

    def _calibration(self, images, labels) -> dict:
        """The current model's calibration on ``images``: expected calibration error and reliability bins before
        and after its temperature (``"calibrated"``: it keeps one; else both are the probabilities as given)."""
        import numpy as np

        from ..core.model.calibration import calibration_report
        from ..core.model.inspection import EVALUATION_CHUNK

        trust = self._trusts.get(self.model)
        heads = self._heads_of_current()
        logits = [heads(images[i:i + EVALUATION_CHUNK])[1] for i in range(0, len(labels), EVALUATION_CHUNK)]
        report = calibration_report(np.concatenate(logits), labels, trust.temperature if trust is not None else 1.0)
        report["calibrated"] = trust is not None and trust.calibrated
        report["declined"] = trust.uncalibrated_reason if trust is not None else None
        return report

    def _unlike(self, prepared) -> dict:
        """``Seen``'s ``unlike``: whether the prepared image is unlike the current model's training images
        (``core.work.novelty``; None when the model keeps no statistics to tell), and ``unlike_reason``: why."""
        trust = self._trusts.get(self.model) if self.model is not None else None
        if trust is None or trust.novelty is None:
            return {"unlike": None}
        signals, _ = self._heads_of_current()(prepared)
        reason = trust.novelty.reasons(signals)[0]
        return {"unlike": bool(reason), "unlike_reason": reason}

    def _heads_of_current(self):
        """The current model's ``core.work.trust.ModelHeads`` (its novelty signals and logits), fed as the viewer
        feeds it now."""
        return self._heads_of(self.model, self.inspector.preprocessing)

    def _warm_heads(self, trust) -> None:
        """Trace the current model's heads now, when its trust flags images, so that the first image the viewer
        shows does not wait for it (two batch sizes: the function is then traced for any)."""
        if trust is None or trust.novelty is None:
            return
        import numpy as np

        heads = self._heads_of_current()
        for n in (1, 2):
            heads(np.zeros((n, *heads.preprocessing.input_shape), np.uint8))

    def _heads_of(self, model, preprocessing):
        """``model``'s ``core.work.trust.ModelHeads``, made once per model (its tf.function traced once)."""
        from ..core.work.trust import ModelHeads

        heads = self._heads.get(model)
        if heads is None:
            heads = self._heads[model] = ModelHeads(model, preprocessing)
        heads.preprocessing = preprocessing
        return heads

    @staticmethod
    def _run_trust(runs, run_id: str | None):
        """The Trust kept with the run ``run_id`` among ``runs`` (None: it has none, or a damaged one)."""
        from ..core.work.trust import trust_of

        return trust_of(runs, run_id)

    # -- the current model -------------------------------------------------------
    @staticmethod
    def _inspector_for(model, class_names, preprocessing):
        """The viewer's ``Inspector`` for ``model`` (raises when the model cannot be inspected); changes nothing."""
        from ..core.training.probes import inspector_for

        # a pooled model keeps its inspector: its tf.functions read the new weights, nothing is traced again
        return inspector_for(model, class_names, preprocessing)

    def _set_model(self, model, inspector, run: str | None, trust: Trust | None) -> None:
        """Make ``model`` and its ``inspector`` current together, as run ``run``, its probabilities calibrated with
        ``trust`` (None: as the model gives them); the model it replaces goes to the pool."""
        self._drop_model(keep=model)
        self.model, self.inspector, self.run_id = model, inspector, run
        inspector.temperature = trust.temperature if trust is not None else 1.0
        if trust is not None:
            self._trusts[model] = trust
        else:
            self._trusts.pop(model, None)

    def _hold_current(self) -> None:
        """The current model is being replaced: hold it by its run id (it comes back at once), instead of the run
        held before, which goes to the pool. A model of no run (one from a file) goes to the pool."""
        self._release_held()
        if self.run_id is not None:
            self.held[self.run_id] = (self.model, self.inspector)
        elif self._pool is not None:
            self._pool.give_back(self.model)
        self.model = self.inspector = self.run_id = None

    def _before(self) -> str | None:
        """The id of the run whose model is held beside the current one (``ModelInfo.before``)."""
        return next(iter(self.held), None)

    def _release_held(self) -> None:
        """Forget the held run's model (it comes back from its file now), giving it to the pool."""
        for model, _ in self.held.values():
            if self._pool is not None and model is not self.model:
                self._pool.give_back(model)
        self.held.clear()

    def _drop_model(self, keep=None) -> None:
        """Forget the current model (unless it is ``keep``), giving it back to the pool."""
        if self.model is not None and self.model is not keep and self._pool is not None:
            self._pool.give_back(self.model)
        self.model = self.inspector = self.run_id = None

    def _need_inspector(self):
        if self.inspector is None:
            raise UserError("There is no trained model yet: train one or open a model first.")
        return self.inspector

    # -- training runs (core.runs) -------------------------------------------------
    def keep_run(self, run_id: str) -> KeptRun:
        """Write the current model, just trained as run ``run_id``, and its probe recording to the scratch folder.

        A run's weights and recording must outlive the model in memory (only the current and the held
        run's models are, docs/memory.md) until a save puts them into the project.
        """
        from ..core.training.runs import RUN_ID

        if self.model is None:
            raise UserError("There is no trained model to keep.")
        if not RUN_ID.match(run_id):
            raise UserError(f"{run_id!r} is not a run id.")
        return self._keep_files(self.model, self._recordings.get(self.model), run_id)

    def _keep_files(self, model, recording, run_id: str) -> KeptRun:
        """Write ``model`` and its probe ``recording`` (None: it has none) to the scratch folder as run ``run_id``."""
        from ..core.training.probes import recording_summary
        from ..core.training.runs import PROBES_DIR

        path = self._write_run(model, run_id)
        if recording is None:
            return KeptRun(path)
        kept = KeptRun(path, str(recording.save(self._scratch_folder() / run_id / PROBES_DIR)),
                       recording_summary(recording))
        self._run_probes[run_id] = (kept.probe_dir, kept.probes)
        return kept

    def restore_run(self, run: Run) -> RunRestored:
        """Make ``run`` current; the current model is held in its place (when it is a run's).

        The held run's model comes back at once, with its probe recording; any other is loaded from ``run.file``,
        and its ``probe_dir`` (the run's probe recording) becomes the restored model's recording, the one
        ``probe_recording`` gives; a recording that cannot be read is left out, saying so. Nothing changes
        when the weights cannot be loaded or inspected.
        """
        from ..core.model.loading import load_keras_model

        held = self.held.pop(run.id, None)
        trust = self._run_trust([run], run.id)
        if held is not None:
            model, inspector = held
            inspector.class_names = list(run.class_names)  # as the runs list names them now
            recording = self._recordings.get(model)
        else:
            if run.file is None:
                raise UserError(f"The weights of {run.name} were not kept, so it cannot be restored.")
            model = load_keras_model(run.file)
            inspector = self._inspector_for(model, list(run.class_names), run.dataset.preprocessing)
            inspector.warm_up()  # before anything changes: a model that fails here leaves the current one
            recording = self._run_recording(run.probe_dir)
            if recording is not None:
                self._recordings[model] = recording
            else:
                self._recordings.pop(model, None)
        if self.model is not None:
            self._hold_current()
        self._set_model(model, inspector, run.id, trust)
        if held is None:
            self._warm_heads(trust)
        return RunRestored(ModelInfo.of_run(inspector, run, self._before(), trust),
                           len(recording.frames) if recording is not None else None)

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

    def _probe_recorder(self, data, paths, model, initial_epoch: int, every_batches: int, task: TaskState):
        """The recorder for a run with probe image ``paths`` (None without); continuing extends the model's own.
        Each frame is reported through the run's ``task``."""
        from ..core.training.probes import known_labels, load_probes, ProbeRecorder, ProbeRecording

        if not paths:
            return None
        probes = load_probes(list(paths), data.preprocessing, data.class_names, known_labels(data))
        recording = self._recordings.get(model) if model is not None else None
        if recording is None or not recording.follows(probes, data.class_names):
            recording = ProbeRecording(probes, data.class_names)
        return ProbeRecorder(recording, data.preprocessing, initial_epoch=initial_epoch, every_batches=every_batches,
                             on_frame=task.report)

    def _keep_recording(self, model, recorder, task: TaskState) -> None:
        """Remember ``recorder``'s recording as ``model``'s (a pooled model reused without probes has none)."""
        if recorder is not None:
            self._recordings[model] = recorder.recording
            if recorder.recording.note:
                task.report(recorder.recording.note)  # a sentence for the run's log
        else:
            self._recordings.pop(model, None)

    # -- data quality ------------------------------------------------------------
    @cancellable
    def score_labels(self, data, layers, settings, folds=0, epochs=None, *, task: TaskState):
        """Out-of-sample probabilities for finding mislabelled images (``core.quality.label_scores.LabelScores``).

        Validation images are scored by the current model when it was trained on these
        classes; with ``folds`` >= 2 the training images too, each by one of ``folds``
        retrains (of ``epochs``, by default the settings' epochs) that did not see it (the current model is left
        as it is). Which retrain runs and how far they are is reported through ``task``. Returns None when
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
            try:
                scores = scores.merged(out_of_fold_probabilities(data, layers, settings, folds, epochs, task))
            except Cancelled:
                return None
            finally:
                return_freed_memory()
        else:
            scores.notes.append("Training images not scored (turn on the retrains to score them).")
        return scores

    @cancellable
    def map_dataset(self, data, distance, doubtful_rows=(), *, task: TaskState):
        """The map of ``data`` as the current model sees it (``core.work.dataset_map.DatasetMap``).

        How far it is goes through ``task``; the rows in ``doubtful_rows`` (label scores' candidates) are marked
        likely mislabelled. Returns None when cancelled.
        """
        from ..core.errors import Cancelled
        from ..core.work.dataset_map import dataset_map

        ins = self._need_inspector()
        if list(ins.class_names) != list(data.class_names):
            raise UserError("The dataset's classes differ from the model's; map the dataset it was trained on.")
        if data.preprocessing.input_shape != ins.preprocessing.input_shape:
            raise UserError("The dataset is read at another size or colour than the model takes; set them back to "
                            "map it.")
        try:
            return dataset_map(self.model, data, distance, doubtful_rows, task)
        except Cancelled:
            return None

    # -- putting the model to work -----------------------------------------------------
    @cancellable
    def classify_folder(self, sources, k=3, left_out=(), *, task: TaskState):
        """Classify every image of the folders (or files) ``sources`` with the current model
        (``core.work.classify_folder``), decoded in threads a batch ahead of the model, its probabilities calibrated
        and its flags set with the trust this engine keeps for it (none: as the model gives them, no flag "unlike
        training").

        The files found are reported first, then each batch's rows, through ``task`` (``RowsClassified``); the answer
        is a ``FolderDone``, which says whether it was cancelled (the rows reported before stay valid).
        """
        from ..core.errors import Cancelled
        from ..core.work.classify_folder import BATCH, classify_files, collect_images, FolderDone, RowsClassified

        ins = self._need_inspector()
        task.set_status("Listing the images…")
        files, skipped = collect_images(sources, left_out=left_out)
        task.report(RowsClassified((), len(files), tuple(skipped)))
        heads = self._heads_of_current()  # with the pixel mode the viewer feeds now
        task.set_status("Classifying")
        batch, count = [], 0
        try:
            for row in classify_files(files, heads, ins.class_names, self._trusts.get(self.model), k=k, state=task):
                batch.append(row)
                if len(batch) == BATCH:
                    task.report(RowsClassified(tuple(batch), len(files)))
                    count, batch = count + len(batch), []
        except Cancelled:
            return FolderDone(count + len(batch), cancelled=True)
        finally:
            if batch:
                task.report(RowsClassified(tuple(batch), len(files)))
        return FolderDone(count + len(batch))

    @cancellable
    def write_csv(self, path, rows, k=3, *, task: TaskState):
        """Write ``rows`` (``FolderRow``s, or a ``RowsView`` of a folder classified) to the CSV file ``path``, whole or
        not at all (``core.work.classify_folder.write_csv``); answers with ``CsvWritten``, or None when cancelled.
        Runs here, off the window's thread, though it needs no model."""
        from ..core.errors import Cancelled
        from ..core.work.classify_folder import CsvWritten, write_csv

        try:
            return CsvWritten(str(path), write_csv(path, rows, k, task))
        except Cancelled:
            return None

    @cancellable
    def sort_rows(self, rows, destination, move=False, flag_folders=False, *, task: TaskState):
        """Copy (or move) the files of ``rows`` into ``destination/<class>/`` (``core.work.classify_folder.sort_row``),
        listing the changes there (``add_to_sort_log``); answers with ``Sorted``. A file that cannot be placed stops
        the sort there, saying why; so does a cancel. Runs here, off the window's thread, though it needs no model."""
        from pathlib import Path

        from ..core.data.fixes import ChangeLog
        from ..core.work.classify_folder import add_to_sort_log, sort_row, Sorted

        log, problem = ChangeLog(), None
        dest = Path(destination)
        try:
            for i, row in enumerate(rows):
                if task.is_interruption_requested():
                    problem = f"Sorting cancelled after {i} of {len(rows)} images."
                    break
                try:
                    sort_row(row, dest, log, move, flag_folders)
                except UserError as e:
                    problem = str(e)
                    break
                task.set_progress_value(100.0 * (i + 1) / max(len(rows), 1))
        finally:
            add_to_sort_log(dest, log.changes)
        return Sorted(str(dest), tuple(log.changes), problem)


def _left_out(data):
    """The rows of ``data`` in neither side of its split (excluded files), which a new split leaves out too."""
    import numpy as np

    return np.setdiff1d(np.arange(len(data.labels)), np.concatenate([data.train_index, data.val_index]))
