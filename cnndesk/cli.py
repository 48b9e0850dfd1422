"""``cnndesk-cli``: the headless command line, on the same core as the app.

User errors (bad path, bad option, unreadable dataset, bad model file) print
one line to stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from .core.errors import UserError

EXIT_USER_ERROR = 2


def _quiet_tensorflow() -> None:
    """Keep library noise off the terminal (see ``cnndesk.core.library_warnings``)."""
    from .core.library_warnings import hide_library_warnings

    hide_library_warnings()


def _load_tensorflow() -> None:
    """Import TensorFlow with its start-up log lines kept off stderr.

    TensorFlow 2.21 prints C++ log lines ("oneDNN custom operations are on",
    "Could not find cuda drivers") while it is imported, before it reads
    ``TF_CPP_MIN_LOG_LEVEL``; they would bury the one-line error messages.
    """
    if "tensorflow" in sys.modules:
        return
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr is not a file (captured, redirected in-process)
        fd = None
    if fd is None:
        import tensorflow  # noqa: F401
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), fd)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _parse_size(text: str) -> tuple[int, int]:
    from .core.images import parse_image_size

    try:
        return parse_image_size(text)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _parse_augment(text: str) -> tuple[str, ...]:
    from .core.dataset import AUGMENTATIONS

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
    from .core.architecture import OPTIMIZERS, PRESETS
    from .core.export import FORMATS

    p = _Parser(prog="cnndesk-cli", description="Train and inspect CNN image classifiers headless.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("samples", help="write the built-in sample dataset")
    s.add_argument("out_dir")
    s.add_argument("--per-class", type=_positive, default=400)

    t = sub.add_parser("train", help="train a model on a dataset folder and save a project")
    t.add_argument("dataset", help="folder with one subfolder of images per class")
    t.add_argument("--project", required=True, help="project folder to write")
    t.add_argument("--preset", choices=list(PRESETS), default="seed")
    t.add_argument("--image-size", type=_parse_size, default=(64, 64), metavar="N|HxW")
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
    t.add_argument("--device", default="cpu", help="cpu, gpu:N, or gpu:N,M for several GPUs (mirrored)")
    t.add_argument("--seed", type=_seed, default=1337)
    t.add_argument("--follow-outside-links", action="store_true",
                   help="also read class folders and files that are links out of the dataset folder")
    t.add_argument("--json", action="store_true", help="one JSON object per line on stdout")

    pr = sub.add_parser("predict", help="classify images")
    pr.add_argument("model", metavar="PROJECT_OR_MODEL")
    pr.add_argument("images", nargs="+", metavar="IMAGE")
    pr.add_argument("--top-k", type=_positive, default=3)
    pr.add_argument("--json", action="store_true")
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
    _add_preprocessing(ev)

    ex = sub.add_parser("export", help="export the trained model")
    ex.add_argument("project", metavar="PROJECT_OR_MODEL")
    ex.add_argument("--format", choices=list(FORMATS), required=True)
    ex.add_argument("--out", required=True)

    st = sub.add_parser("selftest", help="check this installation headless: train, save, reopen, predict, "
                                         "inspect and export in a temporary folder")
    st.add_argument("--keep", metavar="DIR", help="work in DIR and leave its files there")
    return p


def _add_preprocessing(parser: argparse.ArgumentParser) -> None:
    from .core.images import PIXEL_MODES

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
    try:
        return COMMANDS[args.command](args)
    except UserError as e:
        print(f"cnndesk-cli: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as e:  # a path that cannot be written or read: the user's to fix
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        print(f"cnndesk-cli: error:{where}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except MemoryError:
        print("cnndesk-cli: error: out of memory: use a smaller image size, batch size or model", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("cnndesk-cli: interrupted", file=sys.stderr)
        return 130


# ---------------------------------------------------------------------------
# commands

def cmd_samples(args) -> int:
    from .core.samples import write_sample_dataset

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


def _emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def cmd_train(args) -> int:
    from .core.architecture import TrainingSettings, preset
    from .core.architecture import layer_table, total_params
    from .core.dataset import DatasetConfig, load_dataset
    from .core.images import Preprocessing
    from .core.scanning import count_skipped, describe_skipped, printable
    from .core.project import Project, check_destination, estimate_model_bytes, new_run_id, save_project
    from .core.tasks import TaskState

    config = DatasetConfig(Preprocessing(args.image_size, args.color), args.val_split, args.seed, args.augment,
                           args.class_weights)
    settings = TrainingSettings(optimizer=args.optimizer, learning_rate=args.learning_rate,
                                batch_size=args.batch_size, epochs=args.epochs, patience=max(0, args.patience),
                                device=args.device, seed=args.seed)
    settings.validate()
    bar = _Bar(not args.json)
    check_destination(args.project)  # a folder that cannot be written fails before any work

    class LoadState(TaskState):
        def on_progress(self, percent):
            bar.show(f"reading images {percent:.0f}%", percent / 100)

    data = load_dataset(args.dataset, config, LoadState(), follow_outside_links=args.follow_outside_links)
    bar.done()
    warnings = data.warnings()
    if args.json:
        for warning in warnings:  # every warning the text output prints
            _emit({"event": "warning", "message": warning})
    else:
        counts = ", ".join(f"{printable(k)}: {v}" for k, v in data.counts().items())
        print(f"{len(data.labels)} images in {data.num_classes} classes ({counts}); "
              f"{len(data.train_index)} for training, {len(data.val_index)} for validation", file=sys.stderr)
        for line in describe_skipped(data.skipped):  # a summary: never one line per file
            print(line, file=sys.stderr)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)

    layers = preset(args.preset)
    params = total_params(layer_table(layers, data.preprocessing.input_shape, data.num_classes))
    check_destination(args.project, estimate_model_bytes(params))  # and one without room for the model, too

    _load_tensorflow()
    from .core.training import TrainingListener, train

    class Listener(TrainingListener):
        def on_batch(self, r):
            bar.show(f"epoch {r.epoch}/{r.epochs} batch {r.batch}/{r.steps} loss {r.loss:.4f} "
                     f"acc {r.accuracy:.3f} {r.images_per_s:.0f} img/s ETA {r.eta_s:.0f}s",
                     (r.batch / r.steps))

        def on_epoch(self, r):
            if args.json:
                _emit({"event": "epoch", **r.to_json()})
            else:
                bar.done()
                val = "" if r.val_loss is None else f" val_loss {r.val_loss:.4f} val_acc {r.val_accuracy:.3f}"
                print(f"epoch {r.epoch}/{r.epochs}: loss {r.loss:.4f} acc {r.accuracy:.3f}{val} "
                      f"({r.images_per_s:.0f} img/s, {r.seconds:.1f}s)", file=sys.stderr)

        def on_message(self, text):
            if args.json:
                _emit({"event": "note", "message": text})
            else:
                print(text, file=sys.stderr)

    result = train(data, layers, settings, Listener(), augment=args.augment, class_weights=args.class_weights)
    bar.done()
    project = Project(dataset_path=str(Path(args.dataset).resolve()), class_names=data.class_names, dataset=config,
                      preset=args.preset, layers=layers, settings=settings, history=result.history,
                      best_epoch=result.best_epoch, run=new_run_id())
    folder = save_project(args.project, project, result.model)
    skipped = [{"path": s.path, "reason": s.reason} for s in data.skipped]
    if args.json:
        _emit({"event": "done", "project": str(folder), "val_accuracy": result.final_val_accuracy,
               "best_epoch": result.best_epoch, "stopped_early": result.stopped_early, **result.summary_json(),
               "skipped": skipped, "skipped_by_reason": count_skipped(data.skipped)})
    else:
        print(result.stop_message, file=sys.stderr)
        print(result.kept_message, file=sys.stderr)
        if result.chance_message:
            print(f"warning: {result.chance_message}", file=sys.stderr)
        acc = result.final_val_accuracy
        best = f" (weights of epoch {result.best_epoch})" if result.best_epoch else ""
        print(f"saved {folder}; validation accuracy {acc:.3f}{best}" if acc is not None else f"saved {folder}")
    return 0


def _open_inspector(path: str, pixels: str | None = None, tell_pixels: bool = True):
    """A project folder or a .keras/.h5 file -> Inspector (+ Project or None).

    ``pixels`` (a ``PIXEL_MODES`` key) overrides the pixel mode the project stores or the model
    file's layers suggest. For a model file, the mode used and why is said on stderr (unless
    ``tell_pixels`` is False: a command that feeds no images). Class names come from the file
    (or a labels.txt beside it) when they fit the model's outputs.
    """
    from .core.model_loading import load_model_with_labels
    from .core.project import is_project, open_project

    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"{p} does not exist: give a project folder or a .keras or .h5 model file.")
    if not is_project(p):
        from .core.model_file import check_model_path, code_layers, code_refusal, describe_unknown, unknown_classes

        # a damaged or hostile file, or one needing code or a class from the program that saved it, is refused
        # in a moment, before TensorFlow loads
        config = check_model_path(p)
        if code_layers(config):
            raise UserError(code_refusal(p.name))
        unknown = unknown_classes(config)
        if unknown:
            raise UserError(f"{p.name}: {describe_unknown(unknown)}.")
    _load_tensorflow()
    from .core.inspection import Inspector

    if is_project(p):
        project, model = open_project(p)
        if model is None:
            raise UserError(f"The project {p} has no trained model yet: train it first.")
        return Inspector(model, project.class_names, _with_pixels(project.preprocessing, pixels)), project
    from .core.inspection import preprocessing_for_model
    from .core.scanning import printable

    model, names = load_model_with_labels(p)
    found = preprocessing_for_model(model)
    if tell_pixels:
        print(f"{printable(p.name)}: pixels {_pixels_and_why(model, found.pixels, pixels)}", file=sys.stderr)
    ins = Inspector(model, preprocessing=_with_pixels(found, pixels))
    if names is not None and len(names) == len(ins.class_names):
        ins.class_names = list(names)
    return ins, None


def _say_output_note(ins) -> None:
    """Say once, on stderr, that the model's scores are shown as probabilities (after its first prediction)."""
    if ins.output_note:
        print(f"note: {ins.output_note}", file=sys.stderr)


def _with_pixels(preprocessing, pixels: str | None):
    """``preprocessing`` with the pixel mode ``pixels`` (unchanged when None)."""
    return preprocessing if pixels is None else dataclasses.replace(preprocessing, pixels=pixels)


def _pixels_and_why(model, found: str, given: str | None) -> str:
    """"caffe (recognised as ResNet)" or "-1-1 (--preprocessing; the layers suggest caffe)"."""
    from .core.images import recognise_pixels

    if given is not None:
        return given + ("" if given == found else f" (--preprocessing; the model's layers suggest {found})")
    _, why = recognise_pixels([(l.name, type(l).__name__) for l in model.layers])
    return f"{found} ({why}; --preprocessing changes it)"


def cmd_predict(args) -> int:
    from .core.scanning import printable

    ins, _ = _open_inspector(args.model, args.preprocessing)
    failed = False
    results = ins.predict_files(args.images, k=args.top_k, display=False)
    _say_output_note(ins)
    for result in results:
        if isinstance(result, tuple):
            failed = True
            path, reason = result
            if args.json:
                _emit({"path": path, "error": reason})
            else:
                print(f"{printable(str(path))}: error: {reason}", file=sys.stderr)
        elif args.json:
            _emit(result.to_json())
        else:
            tops = ", ".join(f"{printable(c)} {p:.1%}" for c, p in result.top)
            print(f"{printable(str(result.path))}: {tops}")
    return 1 if failed else 0


def cmd_inspect(args) -> int:
    import numpy as np
    from PIL import Image

    from .core.scanning import printable
    from .core.inspection import EMPTY_CAM_NOTE
    from .core.pictures import CAM_SMOOTH_SIGMA, channel_grid, gradcam_overlay, smooth_map

    ins, _ = _open_inspector(args.model, args.preprocessing)
    image = ins.prepare(args.image)
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    maps, probs = ins.activation_maps(image)
    _say_output_note(ins)
    if args.class_name is not None:
        if args.class_name not in ins.class_names:
            raise UserError(f"Unknown class {args.class_name!r}; the model knows "
                            f"{', '.join(map(printable, ins.class_names))}.")
        ci = ins.class_names.index(args.class_name)
    else:
        ci = int(np.argmax(probs))
    written = []
    for i, (name, m) in enumerate(maps, 1):
        path = out / f"{i:02d}_{name.replace('/', '_')}.png"  # a nested model's layer: backbone/layer
        Image.fromarray(channel_grid(m)).save(path)
        written.append(path)
    if ins.has_maps:
        cam = ins.gradcam(image, ci, args.layer, args.method)
        if not np.any(cam):
            layer = printable(args.layer or ins.default_cam_layer)
            print(f"note: the heat map at {layer} is empty. {EMPTY_CAM_NOTE} (--layer, --method gradcam)",
                  file=sys.stderr)
        path = out / f"gradcam_{ins.class_names[ci].replace(os.sep, '_')}.png"
        Image.fromarray(gradcam_overlay(image, smooth_map(cam, CAM_SMOOTH_SIGMA), 0.5)).save(path)  # as the app
        written.append(path)
    else:
        print("the model has no convolution or pooling layer: no activation maps and no heat map",
              file=sys.stderr)
    for w in written:
        print(printable(str(w)))
    print(f"predicted {printable(ins.class_names[int(np.argmax(probs))])} ({float(np.max(probs)):.1%})",
          file=sys.stderr)
    return 0


def cmd_evaluate(args) -> int:
    from .core.dataset import load_dataset
    from .core.scanning import printable
    from .core.project import open_project

    project, _ = open_project(args.project, load_model=False)  # a damaged project.json fails before TF loads
    _load_tensorflow()
    project, model = open_project(args.project)
    if model is None:
        raise UserError(f"The project {args.project} has no trained model yet: train it first.")
    dataset = args.dataset or project.dataset_path
    if not dataset:
        raise UserError("The project names no dataset folder; pass --dataset.")
    data = load_dataset(dataset, project.dataset, follow_outside_links=args.follow_outside_links)
    if data.class_names != project.class_names:
        raise UserError(f"The dataset's classes ({', '.join(map(printable, data.class_names))}) differ from the "
                        f"project's ({', '.join(map(printable, project.class_names))}).")
    from .core.inspection import Inspector

    ins = Inspector(model, project.class_names, _with_pixels(project.preprocessing, args.preprocessing))
    x, y = data.subset(data.val_index)
    if len(y) == 0:
        raise UserError("The project's validation split is empty (split 0), so there is nothing to evaluate on; "
                        "train with --val-split above 0.")
    ev = ins.evaluate(x, y, [data.paths[i] for i in data.val_index])
    _say_output_note(ins)
    if args.json:
        _emit(ev.to_json())
        return 0
    print(f"accuracy {ev.accuracy:.3f} on {len(y)} validation images")
    names = [printable(n) for n in ev.class_names]
    width = max(len(n) for n in names)
    print(f"{'class':<{width}}  precision  recall     f1  support")
    for name, m in zip(names, ev.per_class):
        print(f"{name:<{width}}  {m.precision:9.3f}  {m.recall:6.3f}  {m.f1:5.3f}  {m.support:7d}")
    print("confusion matrix (rows: true, columns: predicted)")
    print(" " * width + "  " + " ".join(f"{n[:6]:>6}" for n in names))
    for name, row in zip(names, ev.confusion):
        print(f"{name:<{width}}  " + " ".join(f"{v:6d}" for v in row))
    return 0


def cmd_export(args) -> int:
    from .core.export import export_model, labels_path

    ins, _ = _open_inspector(args.project, tell_pixels=False)
    out = export_model(ins.model, args.format, args.out, ins.class_names)
    print(out)
    print(f"class names: {labels_path(out, args.format)}")
    return 0


def cmd_selftest(args) -> int:
    from .selftest import run_selftest

    return run_selftest(keep=args.keep)


COMMANDS = {"selftest": cmd_selftest, "samples": cmd_samples, "train": cmd_train, "predict": cmd_predict, "inspect": cmd_inspect,
            "evaluate": cmd_evaluate, "export": cmd_export}

if __name__ == "__main__":
    sys.exit(main())
