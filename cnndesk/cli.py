"""``cnndesk-cli``: the headless command line, on the same core as the app.

User errors (bad path, bad option, unreadable dataset, bad model file) print
one line to stderr and exit 2, never a traceback. This module holds the
parser, :func:`main` and the commands that make things (samples, train,
selftest); the commands that open a trained model are in :mod:`.cli_models`,
what all commands share in :mod:`.cli_support`, ``check`` (duplicates and leaks)
in :mod:`.cli_quality`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .cli_models import cmd_evaluate, cmd_export, cmd_inspect, cmd_predict
from .cli_runs import cmd_runs
from .cli_quality import add_check_parser, cmd_check
from .cli_support import emit_json
from .core.library_warnings import import_tensorflow
from .core.app_log import log, start_logging
from .core.errors import UserError

EXIT_USER_ERROR = 2
VERBOSE_HELP = ("print cnndesk's log to stderr as well, with TensorFlow's start-up lines; "
                "the log file always gets it (see docs/reliability.md)")


def _quiet_tensorflow() -> None:
    """Keep library noise off the terminal (see ``cnndesk.core.library_warnings``)."""
    from .core.cpu_kernels import use_onednn_kernels
    from .core.library_warnings import hide_library_warnings

    hide_library_warnings()
    use_onednn_kernels()  # before TensorFlow is imported: it reads the choice once


def _parse_size(text: str) -> tuple[int, int]:
    from .core.data.images import parse_image_size

    try:
        return parse_image_size(text)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _parse_augment(text: str) -> tuple[str, ...]:
    from .core.data.batches import AUGMENTATIONS

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    aliases = {"rotation": "rotate", "flips": "flip"}
    names = tuple(aliases.get(n, n) for n in names)
    bad = [n for n in names if n not in AUGMENTATIONS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown augmentation {bad[0]!r}; choose from {','.join(AUGMENTATIONS)}")
    return names


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number at least 0 and below 1 (got {text!r})") from None
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError("must be at least 0 and below 1")
    return v


def _seed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to {2**32 - 1} (got {text!r})") from None
    if not 0 <= v < 2**32:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to {2**32 - 1}")
    return v


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1 (got {text!r})") from None
    if v < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return v


def _blocks(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of blocks, 0 or more (got {text!r})") from None
    if v < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return v


class _UsageError(UserError):
    """A bad command line (unknown option, bad value)."""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose mistakes are one line on stderr and exit 2, like every user error."""

    def error(self, message):
        if message.startswith("argument --preprocessing: expected one argument"):
            # argparse takes "-1-1" for an option: say how to write it
            message += "; write --preprocessing=-1-1 for pixels from -1 to 1"
        raise _UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    from .core.model.architecture import OPTIMIZERS, PRESETS
    from .core.model.export import FORMATS

    p = _Parser(prog="cnndesk-cli", description="Train and inspect CNN image classifiers headless.")
    p.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("samples", help="write the built-in sample dataset")
    s.add_argument("out_dir")
    s.add_argument("--per-class", type=_positive, default=400)

    t = sub.add_parser("train", help="train a model on a dataset folder and save a project")
    t.add_argument("dataset", help="folder with one subfolder of images per class")
    t.add_argument("--project", required=True, help="project folder to write")
    t.add_argument("--preset", choices=list(PRESETS), default="seed")
    t.add_argument("--image-size", type=_parse_size, default=None, metavar="N|HxW",
                   help="default 64, or what a pretrained preset's backbone was trained at (224)")
    t.add_argument("--color", choices=["rgb", "grayscale"], default="rgb")
    t.add_argument("--epochs", type=_positive, default=10)
    t.add_argument("--batch-size", type=_positive, default=32)
    t.add_argument("--learning-rate", type=float, default=1e-3)
    t.add_argument("--optimizer", choices=list(OPTIMIZERS), default="adam")
    t.add_argument("--patience", type=int, default=3,
                   help="early stopping: stop when neither validation accuracy nor loss improved for this many "
                        "epochs (at least a quarter of the run, never before half of it, off with fewer than 50 "
                        "validation images); 0 = off")
    t.add_argument("--val-split", type=_fraction, default=0.2)
    t.add_argument("--augment", type=_parse_augment, default=(), metavar="flip,rotate,zoom,contrast,brightness")
    t.add_argument("--class-weights", action="store_true", help="weight classes by inverse frequency")
    t.add_argument("--device", default="cpu", help="cpu, gpu:N, gpu:N,M or gpu:all for several GPUs (mirrored; "
                   "--batch-size is then per GPU)")
    t.add_argument("--seed", type=_seed, default=1337)
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
    t.add_argument("--json", action="store_true", help="one JSON object per line on stdout")
    t.add_argument("--distributed", action="store_true",
                   help="be one process of a run across processes or machines (Keras on JAX; needs the "
                        "'distributed' extra): every process runs the same command, the run is found from "
                        "KERAS_DISTRIBUTION_JOB_ADDRESSES, _NUM_PROCESSES and _PROCESS_ID or from Slurm or Open MPI, "
                        "and process 0 writes the project")
    t.add_argument("--peer-timeout", type=_positive, default=60, metavar="SECONDS",
                   help="with --distributed: stop when another process has not answered for this long")
    t.add_argument("--join-timeout", type=_positive, default=300, metavar="SECONDS",
                   help="with --distributed: how long to wait for every process to start")
    _add_cache_options(t)

    pr = sub.add_parser("predict", help="classify images, or every image in folders")
    pr.add_argument("model", metavar="PROJECT_OR_MODEL")
    pr.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER",
                    help="image files, and folders whose images (in every subfolder) are classified")
    pr.add_argument("--top-k", type=_positive, default=3)
    pr.add_argument("--json", action="store_true")
    pr.add_argument("--csv", metavar="FILE", help="write one row per image: path, class, confidence, the other "
                    "top-k classes and confidences, flags ('not sure', 'unlike training')")
    pr.add_argument("--sort-into", metavar="DIR", help="copy each image into DIR/<predicted class>/")
    pr.add_argument("--move", action="store_true", help="with --sort-into: move the images instead of copying them")
    pr.add_argument("--flag-folders", action="store_true", help="with --sort-into: images flagged 'unlike "
                    "training' or 'not sure' go to DIR/unlike training/ and DIR/not sure/ instead")
    pr.add_argument("--follow-outside-links", action="store_true",
                    help="also read files and folders that are links out of the folders given")
    _add_run(pr)
    _add_preprocessing(pr)

    ins = sub.add_parser("inspect", help="write activation-map grids and a Grad-CAM overlay as PNGs")
    ins.add_argument("model", metavar="PROJECT_OR_MODEL")
    ins.add_argument("image")
    ins.add_argument("--out", required=True, help="folder for the PNGs")
    ins.add_argument("--class", dest="class_name", help="Grad-CAM class (default: the predicted one)")
    ins.add_argument("--layer", help="Grad-CAM layer, as the map files name it (default: the last convolution "
                     "whose map is more than 1x1; a nested model's layers are backbone/layer)")
    ins.add_argument("--method", choices=("hirescam", "gradcam"), default="hirescam",
                     help="heat-map method: HiResCAM (default) or classic Grad-CAM")
    _add_preprocessing(ins)

    ev = sub.add_parser("evaluate", help="accuracy, per-class metrics and confusion matrix on the validation split")
    ev.add_argument("project")
    ev.add_argument("--dataset", help="dataset folder, if it moved since training")
    ev.add_argument("--follow-outside-links", action="store_true",
                    help="also read class folders and files that are links out of the dataset folder")
    ev.add_argument("--json", action="store_true")
    _add_run(ev)
    _add_preprocessing(ev)

    ex = sub.add_parser("export", help="export the trained model")
    ex.add_argument("project", metavar="PROJECT_OR_MODEL")
    ex.add_argument("--format", choices=list(FORMATS), required=True)
    ex.add_argument("--out", required=True)
    _add_run(ex)

    ru = sub.add_parser("runs", help="list a project's training runs with their key figures")
    ru.add_argument("project")
    ru.add_argument("--json", action="store_true", help="one JSON object per run")

    add_check_parser(sub, _parse_size, _fraction, _seed)

    cc = sub.add_parser("clear-cache", help="delete the on-disk caches of datasets larger than the memory limit")
    cc.add_argument("--cache-dir", metavar="DIR", help="the cache folder, if not the default")

    st = sub.add_parser("selftest", help="check this installation headless: train, save, reopen, predict, "
                                         "inspect and export in a temporary folder")
    st.add_argument("--keep", metavar="DIR", help="work in DIR and leave its files there")
    for command in sub.choices.values():  # after the command, where people type it, as well as before
        command.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    return p


def _add_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", metavar="NAME", help="use this training run of the project (its name or id, as "
                        "`cnndesk-cli runs PROJECT` lists them) instead of its current model")


def _memory_limit(text: str) -> int:
    from .core.data.cache_plan import parse_bytes

    try:
        return parse_bytes(text)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_cache_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-memory-limit", type=_memory_limit, metavar="SIZE",
                        help="memory the decoded images may take, e.g. 8G or 512M (default: half of the available "
                             "memory); a dataset that needs more is decoded once into a cache on disk and read "
                             "from there; 0 always uses the disk")
    parser.add_argument("--cache-dir", metavar="DIR",
                        help="folder for on-disk dataset caches (default: $CNNDESK_CACHE_DIR, else the user's "
                             "cache folder, e.g. ~/.cache/cnndesk/datasets); delete it to free the space")


def _cache_settings(args):
    from .core.data.cache_plan import CacheSettings

    return CacheSettings(args.cache_memory_limit, Path(args.cache_dir) if args.cache_dir else None)


class _LoadProgress:
    """Progress of reading a dataset for the CLI: the bar, and ``--json`` events while a cache is prepared."""

    def __init__(self, bar: "_Bar", json_events: bool):
        from .core.data.disk_cache import PREPARING
        from .core.tasks import ReportingTaskState

        def status(text: str) -> None:
            self.preparing = text.startswith(PREPARING)

        self.bar, self.json_events, self.preparing = bar, json_events, False
        self.state = ReportingTaskState(status, self.show, min_interval=0.5 if json_events else 0.05)

    def show(self, percent: float) -> None:
        what = "preparing the on-disk cache" if self.preparing else "reading images"
        self.bar.show(f"{what} {percent:.0f}%", percent / 100)
        if self.json_events and self.preparing:
            emit_json({"event": "progress", "stage": "prepare_cache", "percent": round(percent, 1)})


def _add_preprocessing(parser: argparse.ArgumentParser) -> None:
    from .core.data.images import PIXEL_MODES

    parser.add_argument("--preprocessing", choices=list(PIXEL_MODES), metavar="{" + ",".join(PIXEL_MODES) + "}",
                        help="how pixels are fed to the model (write --preprocessing=-1-1 for the "
                             "second): " + "; ".join(PIXEL_MODES.values()) +
                             ". Default: what the project stores; for a model file, what its layers say "
                             "(keras.applications families get their own mode, a model with a Rescaling "
                             "layer 0-255, others 0-1)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as e:
        print(f"cnndesk-cli: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    _quiet_tensorflow()
    start_logging(f"cnndesk-cli {args.command}", echo=args.verbose)
    if args.command == "train" and args.distributed:
        return run_command(lambda: _launch_distributed(args, sys.argv[1:] if argv is None else argv))
    return run_command(lambda: COMMANDS[args.command](args))


def _launch_distributed(args, argv: list[str]) -> int:
    """Train as one process of a distributed run, in a child process on the JAX backend (see ``distributed``)."""
    from .distributed import launch

    if args.device != "cpu":
        raise UserError("--distributed trains on every device JAX finds on each machine: leave out --device.")
    return launch(argv, args.peer_timeout, args.join_timeout)


def run_command(command) -> int:
    """Run ``command()``, turning the user's mistakes into one line on stderr and exit status 2."""
    try:
        return command()
    except UserError as e:
        log.info("refused: %s", e)
        print(f"cnndesk-cli: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as e:  # a path that cannot be written or read: the user's to fix
        log.warning("file error", exc_info=True)
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        print(f"cnndesk-cli: error:{where}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except MemoryError:
        log.warning("out of memory", exc_info=True)
        print("cnndesk-cli: error: out of memory: use a smaller image size, batch size or model", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("cnndesk-cli: interrupted", file=sys.stderr)
        return 130


# ---------------------------------------------------------------------------
# commands

def cmd_samples(args) -> int:
    from .core.data.samples import write_sample_dataset

    out = write_sample_dataset(args.out_dir, per_class=args.per_class)
    print(out)
    return 0


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
    """Train and save a project; ``fit`` and ``save`` replace ``training.train`` and ``project.save_project``
    (a distributed run's process passes its own)."""
    from .core.model.architecture import TrainingSettings
    from .core.model.architecture import layer_table, total_params
    from .core.data.dataset import DatasetConfig, load_dataset
    from .core.data.images import Preprocessing
    from .core.data.scanning import count_skipped, describe_skipped, printable
    from .core.project.store import check_destination, estimate_model_bytes, new_run_id, Project, save_project
    from .core.training.runs import next_run_name, Run

    layers = _train_layers(args)
    config = DatasetConfig(Preprocessing(_image_size(args, layers), args.color), args.val_split, args.seed,
                           args.augment, args.class_weights)
    settings = TrainingSettings(optimizer=args.optimizer, learning_rate=args.learning_rate,
                                batch_size=args.batch_size, epochs=args.epochs, patience=max(0, args.patience),
                                device=args.device, seed=args.seed)
    settings.validate()
    bar = _Bar(not args.json)
    check_destination(args.project)  # a folder that cannot be written fails before any work
    runs = _runs_kept(args.project)

    progress = _LoadProgress(bar, args.json)
    data = load_dataset(args.dataset, config, progress.state, follow_outside_links=args.follow_outside_links,
                        cache=_cache_settings(args))
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
    from .core.training.progress import TrainingListener
    from .core.training.fitting import train

    class Listener(TrainingListener):
        def on_batch(self, r):
            bar.show(f"epoch {r.epoch}/{r.epochs} batch {r.batch}/{r.steps} loss {r.loss:.4f} "
                     f"acc {r.accuracy:.3f} {r.images_per_s:.0f} img/s ETA {r.eta_s:.0f}s",
                     (r.batch / r.steps))

        def on_epoch(self, r):
            if args.json:
                emit_json({"event": "epoch", **r.to_json()})
            else:
                bar.done()
                val = "" if r.val_loss is None else f" val_loss {r.val_loss:.4f} val_acc {r.val_accuracy:.3f}"
                print(f"epoch {r.epoch}/{r.epochs}: loss {r.loss:.4f} acc {r.accuracy:.3f}{val} "
                      f"({r.images_per_s:.0f} img/s, {r.seconds:.1f}s)", file=sys.stderr)

        def on_message(self, text):
            if args.json:
                emit_json({"event": "note", "message": text})
            else:
                print(text, file=sys.stderr)

    recorder = None
    if probes is not None:
        from .core.training.probes import ProbeRecorder

        recorder = ProbeRecorder(probes, data.preprocessing)
    result = (fit or train)(data, layers, settings, Listener(), augment=args.augment,
                            class_weights=args.class_weights, callbacks=(recorder.callback(),) if recorder else ())
    bar.done()
    trust = None
    if fit is None:  # a distributed run's model lives on JAX; the measuring is TensorFlow's
        from .core.work.trust import measure_trust

        trust = measure_trust(result.model, data)
    run = Run(id=new_run_id(), name=next_run_name(runs), created=time.time(), class_names=tuple(data.class_names),
              dataset=config, dataset_path=str(Path(args.dataset).resolve()), preset=args.preset,
              layers=tuple(layers), settings=settings, history=tuple(result.history), best_epoch=result.best_epoch,
              kept_message=result.kept_message, trust=None if trust is None else trust.to_json())
    if probes is not None:  # the save puts the recording into the run's folder as well as beside the model
        from .core.training.probes import recording_summary

        run = run.with_probes(recording_summary(probes))
    project = Project(dataset_path=str(Path(args.dataset).resolve()), class_names=data.class_names, dataset=config,
                      preset=args.preset, layers=layers, settings=settings, history=result.history,
                      best_epoch=result.best_epoch, run=run.id, runs=[*runs, run])
    folder = (save or save_project)(args.project, project, result.model, probes=probes)
    if probes is not None:
        _report_probes(folder, probes, args.json)
    skipped = [{"path": s.path, "reason": s.reason} for s in data.skipped]
    if args.json:
        emit_json({"event": "done", "project": str(folder), "val_accuracy": result.final_val_accuracy,
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
        print(f"saved {folder}; validation accuracy {acc:.3f}{best}" if acc is not None else f"saved {folder}")
    return 0


def _runs_kept(folder) -> list:
    """The runs of the project ``train`` writes into (none for a new one): the new run is added to them."""
    from .core.project.store import is_project, open_project

    return list(open_project(folder, load_model=False)[0].runs) if is_project(folder) else []


def _probe_recording(paths: list[str], data):
    """The recording that ``--probe`` asks for (None without probes); unreadable images fail before training."""
    if not paths:
        return None
    from .core.training.probes import known_labels, load_probes, ProbeRecording

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
    from .core.model.architecture import has_backbone, preset

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
    from .core.model.architecture import default_image_size

    side = default_image_size(layers) or 64
    return args.image_size or (side, side)


def fetch_backbone_weights(layers, input_shape, bar: _Bar) -> None:
    """Download a pretrained preset's weights into the Keras cache if needed, with progress on stderr.

    Ctrl-C cancels the download (nothing is left in the cache) and the command.
    Offline, the error names the file, its size and the folder.
    """
    from .core.model.architecture import has_backbone
    from .core.model.backbones import ensure_weights, WeightsUnavailable
    from .core.tasks import TaskState

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


def cmd_clear_cache(args) -> int:
    from .core.data.cache_plan import CacheSettings, format_bytes
    from .core.data.disk_cache import clear_caches

    settings = CacheSettings(folder=Path(args.cache_dir) if args.cache_dir else None)
    freed = clear_caches(settings)
    print(f"freed {format_bytes(freed)} in {settings.root()}")
    return 0


def cmd_selftest(args) -> int:
    from .selftest import run_selftest

    return run_selftest(keep=args.keep)


COMMANDS = {"selftest": cmd_selftest, "samples": cmd_samples, "train": cmd_train, "predict": cmd_predict, "inspect": cmd_inspect,
            "evaluate": cmd_evaluate, "export": cmd_export, "runs": cmd_runs, "check": cmd_check,
            "clear-cache": cmd_clear_cache}

if __name__ == "__main__":
    sys.exit(main())
