"""``cnndesk-cli train``: train a model on a dataset folder and save it as a project.

The run is recorded as the app records one (``core.training.runs.new_run``); a project
that exists already gains the run beside its earlier ones. ``--distributed``
runs the same command in a child process on JAX (:mod:`.launcher`), which calls
:func:`cmd_train` with its own ``fit`` and ``save``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.errors import UserError
from ..core.intervals import interval_json, with_interval
from ..core.library_warnings import import_tensorflow
from .support import add_cache_options, cache_settings, emit_json, fraction, image_size, positive, seed, whole_number


def add_parser(sub) -> None:
    """The ``train`` command."""
    from ..core.model.architecture import OPTIMIZERS, PRECISIONS, PRESETS, TrainingSettings

    defaults = TrainingSettings()  # the one place of the training defaults, the model panel's too
    t = sub.add_parser("train", help="train a model on a dataset folder and save a project")
    t.add_argument("dataset", help="folder with one subfolder of images per class")
    t.add_argument("--project", required=True, help="project folder to write")
    t.add_argument("--preset", choices=list(PRESETS), default="seed")
    t.add_argument("--image-size", type=image_size, default=None, metavar="N|HxW",
                   help="default 64, or what a pretrained preset's backbone was trained at (224)")
    t.add_argument("--color", choices=["rgb", "grayscale"], default="rgb")
    t.add_argument("--epochs", type=positive, default=defaults.epochs)
    t.add_argument("--min-steps", type=int, default=defaults.min_steps, metavar="N",
                   help=f"a new model takes at least N optimizer steps: on a small folder the run gets more epochs "
                        f"than --epochs (default {defaults.min_steps}; 0 = exactly --epochs)")
    t.add_argument("--batch-size", type=positive, default=defaults.batch_size)
    t.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    t.add_argument("--optimizer", choices=list(OPTIMIZERS), default=defaults.optimizer)
    t.add_argument("--patience", type=int, default=defaults.patience,
                   help="early stopping: stop when neither validation accuracy nor loss improved for this many "
                        "epochs (at least a quarter of the run, never before half of it, off with fewer than 50 "
                        "validation images); 0 = off")
    t.add_argument("--val-split", type=fraction, default=0.2)
    t.add_argument("--augment", type=_parse_augment, default=(), metavar="flip,rotate,zoom,contrast,brightness")
    t.add_argument("--class-weights", action="store_true", help="weight classes by inverse frequency")
    t.add_argument("--device", default=defaults.device, help="cpu, gpu:N, gpu:N,M or gpu:all for several GPUs (mirrored; "
                   "--batch-size is then per GPU)")
    t.add_argument("--precision", choices=list(PRECISIONS), default=defaults.precision,
                   help="auto (default): bfloat16 mixed precision on a CPU that computes bfloat16 natively "
                        "(avx512_bf16, amx_bf16), float32 elsewhere; float32 or bfloat16 force one. The saved "
                        "model is float32 either way")
    t.add_argument("--seed", type=seed, default=defaults.seed)
    t.add_argument("--fine-tune", type=_blocks, default=0, metavar="N",
                   help="pretrained presets: after training the head, fine-tune the backbone's top N blocks at a "
                        "tenth of the learning rate for as many epochs again (default 0: backbone frozen)")
    t.add_argument("--weights-file", metavar="PATH",
                   help="pretrained presets: load the backbone's weights from this file instead of the Keras cache")
    t.add_argument("--follow-outside-links", action="store_true",
                   help="also read class folders and files that are links out of the dataset folder")
    t.add_argument("--probe", action="append", default=[], metavar="IMAGE",
                   help="record what the network sees in IMAGE after every epoch, saved with the project "
                        "(repeatable, up to 4)")
    t.add_argument("--repeats", type=_repeats, default=1, metavar="N",
                   help="train N models with the seeds SEED, SEED+1, … and report the spread of their validation "
                        "accuracy; each is a run of the project, and --keep says which model the project keeps")
    t.add_argument("--resplit", action="store_true",
                   help="with --repeats: each model on its own train/validation split (of its seed)")
    t.add_argument("--keep", choices=["best", "ensemble"], default="best",
                   help="with --repeats: keep the model with the best validation accuracy (a figure that flatters "
                        "it, since it chose it) or an ensemble that averages all of them (default best)")
    t.add_argument("--json", action="store_true", help="one JSON object per line on stdout")
    t.add_argument("--distributed", action="store_true",
                   help="be one process of a run across processes or machines (Keras on JAX; needs the "
                        "'distributed' extra): every process runs the same command, the run is found from "
                        "KERAS_DISTRIBUTION_JOB_ADDRESSES, _NUM_PROCESSES and _PROCESS_ID or from Slurm or Open MPI, "
                        "and process 0 writes the project")
    t.add_argument("--peer-timeout", type=positive, default=60, metavar="SECONDS",
                   help="with --distributed: stop when another process has not answered for this long")
    t.add_argument("--join-timeout", type=positive, default=300, metavar="SECONDS",
                   help="with --distributed: how long to wait for every process to start")
    add_cache_options(t)


def _parse_augment(text: str) -> tuple[str, ...]:
    from ..core.data.batches import AUGMENTATIONS

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    aliases = {"rotation": "rotate", "flips": "flip"}
    names = tuple(aliases.get(n, n) for n in names)
    bad = [n for n in names if n not in AUGMENTATIONS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown augmentation {bad[0]!r}; choose from {','.join(AUGMENTATIONS)}")
    return names



def _repeats(text: str) -> int:
    from ..core.training.repeat_runs import MOST

    return whole_number(text, 1, MOST, what=f"a whole number of models, 1 to {MOST}",
                        out_of_range=f"must be 1 to {MOST}")


def _blocks(text: str) -> int:
    return whole_number(text, 0, what="a whole number of blocks, 0 or more", out_of_range="must be 0 or more")


class _LoadProgress:
    """Progress of reading a dataset for the CLI: the bar, and ``--json`` events while a cache is prepared."""

    def __init__(self, bar: "_Bar", json_events: bool):
        from ..core.data.disk_cache import PREPARING
        from ..core.tasks import ReportingTaskState

        def status(text: str) -> None:
            self.preparing = text.startswith(PREPARING)

        self.bar, self.json_events, self.preparing = bar, json_events, False
        self.state = ReportingTaskState(status, self.show, min_interval=0.5 if json_events else 0.05)

    def show(self, percent: float) -> None:
        what = "preparing the on-disk cache" if self.preparing else "reading images"
        self.bar.show(f"{what} {percent:.0f}%", percent / 100)
        if self.json_events and self.preparing:
            emit_json({"event": "progress", "stage": "prepare_cache", "percent": round(percent, 1)})

class _Bar:
    """A one-line terminal progress bar on stderr."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()

    def show(self, text: str, fraction: float) -> None:
        if not self.enabled:
            return
        width = 28
        filled = int(width * max(0.0, min(1.0, fraction)))
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {text}\x1b[K")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[K")


def cmd_train(args, fit=None, save=None) -> int:
    """Train and save a project; ``fit`` and ``save`` replace ``fitting.train`` and ``store.save_project``
    (a distributed run's process passes its own)."""
    from ..core.model.architecture import TrainingSettings
    from ..core.model.architecture import layer_table, total_params
    from ..core.data.dataset import DatasetConfig, load_dataset
    from ..core.data.images import Preprocessing
    from ..core.data.scanning import count_skipped, describe_skipped, printable
    from ..core.project.store import check_destination, estimate_model_bytes, new_run_id, Project, save_project
    from ..core.training.runs import batch_point, new_run
    from ..core.project.session import thin

    layers = _train_layers(args)
    if args.repeats > 1 and fit is not None:
        raise UserError("--repeats cannot be combined with --distributed.")
    if args.repeats == 1 and (args.resplit or args.keep != "best"):
        raise UserError(f"{'--resplit' if args.resplit else '--keep'} goes with --repeats N (N of 2 or more).")
    config = DatasetConfig(Preprocessing(_image_size(args, layers), args.color), args.val_split, args.seed,
                           args.augment, args.class_weights)
    settings = TrainingSettings(optimizer=args.optimizer, learning_rate=args.learning_rate,
                                batch_size=args.batch_size, epochs=args.epochs, patience=max(0, args.patience),
                                device=args.device, seed=args.seed, min_steps=max(0, args.min_steps),
                                precision=args.precision)
    settings.validate()
    bar = _Bar(not args.json)
    check_destination(args.project)  # a folder that cannot be written fails before any work
    runs = _runs_kept(args.project)

    progress = _LoadProgress(bar, args.json)
    data = load_dataset(args.dataset, config, progress.state, follow_outside_links=args.follow_outside_links,
                        cache=cache_settings(args))
    bar.done()
    warnings = data.warnings()
    scaled = data.upscaling_note()  # images smaller than the image size, as the Dataset tab says too
    if args.json:
        emit_json({"event": "cache", "message": data.storage.describe(), **data.storage.to_json()})
        if scaled:
            emit_json({"event": "note", "message": scaled})
        for warning in warnings:  # every warning the text output prints
            emit_json({"event": "warning", "message": warning})
    else:
        counts = ", ".join(f"{printable(k)}: {v}" for k, v in data.counts().items())
        print(f"{len(data.labels)} images in {data.num_classes} classes ({counts}); "
              f"{len(data.train_index)} for training, {len(data.val_index)} for validation"
              f"{f' ({data.split_note})' if data.split_note else ''}", file=sys.stderr)
        if scaled:
            print(scaled, file=sys.stderr)
        for line in describe_skipped(data.skipped):  # a summary: never one line per file
            print(line, file=sys.stderr)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)

    probes = _probe_recording(args.probe, data)
    params = total_params(layer_table(layers, data.preprocessing.input_shape, data.num_classes))
    check_destination(args.project, estimate_model_bytes(params))  # and one without room for the model, too

    fetch_backbone_weights(layers, data.preprocessing.input_shape, bar)
    import_tensorflow()
    from ..core.training.progress import TrainingListener
    from ..core.training.fitting import train

    batch_points = []  # the run's batch-loss line, as the app draws and keeps it

    class Listener(TrainingListener):
        def on_batch(self, r):
            batch_points.append(batch_point(r))
            bar.show(f"epoch {r.epoch}/{r.epochs} batch {r.batch}/{r.steps} loss {r.loss:.4f} "
                     f"acc {r.accuracy:.3f} {r.images_per_s:.0f} img/s ETA {r.eta_s:.0f}s",
                     (r.batch / r.steps))

        def on_epoch(self, r):
            if args.json:
                emit_json({"event": "epoch", **r.to_json(),
                           "val_accuracy_interval": interval_json(r.val_accuracy, r.val_images)})
            else:
                bar.done()
                val = ("" if r.val_loss is None else
                       f" val_loss {r.val_loss:.4f} val_acc {with_interval(r.val_accuracy, r.val_images)}")
                print(f"epoch {r.epoch}/{r.epochs}: loss {r.loss:.4f} acc {r.accuracy:.3f}{val} "
                      f"({r.images_per_s:.0f} img/s, {r.seconds:.1f}s)", file=sys.stderr)

        def on_message(self, text):
            if args.json:
                emit_json({"event": "note", "message": text})
            else:
                print(text, file=sys.stderr)

    if args.repeats > 1:
        return _train_repeats(args, data, layers, settings, config, runs, Listener(),
                              probes.probes if probes is not None else ())
    recorder = None
    if probes is not None:
        from ..core.training.probes import ProbeRecorder

        recorder = ProbeRecorder(probes, data.preprocessing)
    result = (fit or train)(data, layers, settings, Listener(), augment=args.augment,
                            class_weights=args.class_weights, callbacks=(recorder.callback(),) if recorder else ())
    bar.done()
    trust = None
    if fit is None:  # a distributed run's model lives on JAX; the measuring is TensorFlow's
        from ..core.work.trust import measure_trust

        trust = measure_trust(result.model, data)
    summary = None
    if probes is not None:  # the save puts the recording into the run's folder as well as beside the model
        from ..core.training.probes import recording_summary

        summary = recording_summary(probes)
    batch_loss = thin(batch_points)
    run = new_run(runs, new_run_id(), class_names=data.class_names, dataset=config, dataset_path=args.dataset,
                  preset=args.preset, layers=layers, settings=settings, history=result.history,
                  best_epoch=result.best_epoch, kept_message=result.kept_message, batch_loss=batch_loss,
                  trust=None if trust is None else trust.to_json(), probes=summary)
    project = Project(dataset_path=run.dataset_path, class_names=data.class_names, dataset=config,
                      preset=args.preset, layers=layers, settings=settings, history=result.history,
                      best_epoch=result.best_epoch, batch_loss=batch_loss, run=run.id, runs=[*runs, run])
    folder = (save or save_project)(args.project, project, result.model, probes=probes)
    if probes is not None:
        _report_probes(folder, probes, args.json)
    skipped = [{"path": s.path, "reason": s.reason} for s in data.skipped]
    if args.json:
        emit_json({"event": "done", "project": str(folder), "val_accuracy": result.final_val_accuracy,
               "val_accuracy_interval": interval_json(result.final_val_accuracy, result.val_images),
               "val_images": result.val_images,
               "best_epoch": result.best_epoch, "stopped_early": result.stopped_early, **result.summary_json(),
               "skipped": skipped, "skipped_by_reason": count_skipped(data.skipped),
               "temperature": None if trust is None else trust.temperature,
               "ece_before": None if trust is None or not trust.calibration else trust.calibration["ece_before"],
               "ece_after": None if trust is None or not trust.calibration else trust.calibration["ece_after"]})
    else:
        print(result.stop_message, file=sys.stderr)
        print(result.kept_message, file=sys.stderr)
        for note in trust.notes if trust is not None else ():
            print(note, file=sys.stderr)
        if result.chance_message:
            print(f"warning: {result.chance_message}", file=sys.stderr)
        acc = result.final_val_accuracy
        best = f" (weights of epoch {result.best_epoch})" if result.best_epoch else ""
        print(f"saved {folder}; validation accuracy {with_interval(acc, result.val_images)}{best}" if acc is not None
              else f"saved {folder}")
    return 0


def _train_repeats(args, data, layers, settings, config, runs, listener, probes) -> int:
    """``train --repeats N``: N models, each a run of the project; the kept one (the best, or their ensemble) is
    the project's model; the spread of their validation accuracy is printed (and in the ``done`` event). With
    ``probes`` (``--probe``) each model records them as one training does: each run keeps its recording, and the
    best kept is saved with its own, as a single training's model."""
    import dataclasses
    import tempfile

    from ..core.intervals import with_interval
    from ..core.project.store import new_run_id, Project, save_project
    from ..core.training.probes import recording_summary
    from ..core.training.repeat_runs import group_runs, kept_run_id
    from ..core.training.repeats import train_repeats
    from ..core.training.runs import KeptRun

    ids = [new_run_id() for _ in range(args.repeats)]
    ensemble_id = new_run_id() if args.keep == "ensemble" else None

    def said(i, member):
        if not args.json:
            acc = member.val_accuracy
            print(f"model {i + 1} of {args.repeats} (seed {member.seed}): validation accuracy "
                  f"{with_interval(acc, len(member.data.val_index))}", file=sys.stderr)

    repeats = train_repeats(data, layers, settings, config, args.repeats, keep=args.keep, resplit_each=args.resplit,
                            listener=listener, on_member=said, probes=probes)
    ids = ids[:len(repeats.members)]
    kept = kept_run_id(repeats, ids, ensemble_id)
    with tempfile.TemporaryDirectory(prefix="cnndesk-repeats-") as scratch:
        group = group_runs(runs, repeats, ids, ensemble_id=ensemble_id, class_names=data.class_names,
                           dataset_path=args.dataset, preset=args.preset, layers=layers)
        placed = []
        for run, member in zip(group, repeats.members):  # the members' weights and recordings, which the save copies in
            path = Path(scratch) / f"{run.id}.keras"
            member.result.model.save(path)
            recording = member.recording
            placed.append(run.kept_at(KeptRun(str(path)) if recording is None else KeptRun(
                str(path), str(recording.save(Path(scratch) / f"{run.id}.probes")), recording_summary(recording))))
        group = placed + group[len(placed):]
        if repeats.kept == "best":  # the kept model's temperature and novelty statistics, as a single run's
            from ..core.work.trust import measure_trust

            best = repeats.members[repeats.best]
            trust = measure_trust(best.result.model, best.data)
            group[repeats.best] = dataclasses.replace(group[repeats.best], trust=trust.to_json())
        current = next(r for r in group if r.id == kept)
        project = Project(dataset_path=current.dataset_path, class_names=data.class_names, dataset=current.dataset,
                          preset=args.preset, layers=layers, settings=current.settings, history=list(current.history),
                          best_epoch=current.best_epoch, run=kept, runs=[*runs, *group])
        kept_recording = repeats.members[repeats.best].recording if repeats.kept == "best" else None
        folder = save_project(args.project, project, repeats.model, probes=kept_recording)
    if kept_recording is not None:
        _report_probes(folder, kept_recording, args.json)
    acc = repeats.history[-1].get("val_accuracy") if repeats.history else None
    if args.json:
        emit_json({"event": "done", "project": str(folder), "val_accuracy": acc, "runs": ids, "kept_run": kept,
                   **repeats.to_json()})
        return 0
    for line in repeats.lines():
        print(line, file=sys.stderr)
    print(f"saved {folder}; kept {'an ensemble of ' + str(len(repeats.finished)) if repeats.kept == 'ensemble' else 'the best'}"
          f" of {len(repeats.members)} models" + (f", validation accuracy {acc:.3f}" if acc is not None else ""))
    return 0


def _runs_kept(folder) -> list:
    """The runs of the project ``train`` writes into (none for a new one): the new run is added to them."""
    from ..core.project.store import is_project, open_project

    return list(open_project(folder, load_model=False)[0].runs) if is_project(folder) else []


def _probe_recording(paths: list[str], data):
    """The recording that ``--probe`` asks for (None without probes); unreadable images fail before training."""
    if not paths:
        return None
    from ..core.training.probes import known_labels, load_probes, ProbeRecording

    return ProbeRecording(load_probes(paths, data.preprocessing, data.class_names, known_labels(data)),
                          data.class_names)


def _report_probes(folder: Path, probes, as_json: bool) -> None:
    """Say where the probe recording was saved (and why it stopped, if it did)."""
    import json

    ref = json.loads((folder / "project.json").read_text(encoding="utf-8")).get("probes")
    where = folder / ref if ref else folder
    if as_json:
        emit_json({"event": "probes", "folder": str(where), "frames": len(probes.frames),
                   "images": len(probes.probes), "note": probes.note})
        return
    if probes.note:
        print(f"warning: {probes.note}", file=sys.stderr)
    print(f"probe recording ({len(probes.frames)} frames of {len(probes.probes)} images) saved in {where}")


def _train_layers(args) -> list:
    """The preset's stack with the pretrained options applied; refused for a preset without a backbone."""
    from ..core.model.architecture import has_backbone, preset

    layers = preset(args.preset)
    if not has_backbone(layers):
        if args.fine_tune or args.weights_file:
            option = "--fine-tune" if args.fine_tune else "--weights-file"
            raise UserError(f"{option} needs a pretrained preset (mobilenetv3small, efficientnetb0, mobilenetv2).")
        return layers
    layers[0].params["fine_tune"] = args.fine_tune
    if args.weights_file:
        layers[0].params["weights"] = str(Path(args.weights_file).expanduser().resolve())
    return layers


def _image_size(args, layers) -> tuple[int, int]:
    from ..core.model.architecture import default_image_size

    side = default_image_size(layers) or 64
    return args.image_size or (side, side)


def fetch_backbone_weights(layers, input_shape, bar: _Bar) -> None:
    """Download a pretrained preset's weights into the Keras cache if needed, with progress on stderr.

    Ctrl-C cancels the download (nothing is left in the cache) and the command.
    Offline, the error names the file, its size and the folder.
    """
    from ..core.model.architecture import has_backbone
    from ..core.model.backbones import ensure_weights, WeightsUnavailable
    from ..core.tasks import TaskState

    if not has_backbone(layers):
        return

    class Download(TaskState):
        shown = -25.0

        def set_status(self, text):
            print(text, file=sys.stderr)

        def on_progress(self, percent):
            bar.show(f"downloading {percent:.0f}%", percent / 100)
            if not bar.enabled and percent >= self.shown + 25:  # a log line every quarter when not a terminal
                self.shown = percent
                print(f"downloaded {percent:.0f}%", file=sys.stderr)

    try:
        ensure_weights(layers[0].full_params(), input_shape, Download(min_interval=0.1))
    except WeightsUnavailable as e:
        raise UserError(str(e).replace("or choose a weights file", "or pass a weights file with --weights-file PATH"))
    except KeyboardInterrupt:  # Ctrl-C: the partial file is already gone
        bar.done()
        print("Download cancelled; nothing was kept in the Keras cache.", file=sys.stderr)
        raise
    finally:
        bar.done()

