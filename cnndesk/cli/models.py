"""The ``cnndesk-cli`` commands that open a trained model: predict, inspect, evaluate, export and map; and
``undo-sort``, which takes back what ``predict --sort-into`` copied or moved.

Each takes a cnndesk project folder or (all but evaluate) a ``.keras``/``.h5``
model file, opens it as an :class:`~cnndesk.core.model.inspection.Inspector` and
reports on stdout; user errors are raised as :class:`UserError` for
:func:`cnndesk.cli.main` to print as one line.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from ..core.errors import UserError
from ..core.intervals import interval_range, with_interval
from ..core import fsutil
from ..core.library_warnings import import_tensorflow
from .runs import add_run_option, load_run_model, run_of
from .support import add_cache_options, cache_settings, emit_json, positive


def add_parsers(sub) -> None:
    """The ``predict``, ``inspect``, ``evaluate``, ``export`` and ``map`` commands."""
    from ..core.model.export import FORMATS

    pr = sub.add_parser("predict", help="classify images, or every image in folders")
    pr.add_argument("model", metavar="PROJECT_OR_MODEL")
    pr.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER",
                    help="image files, and folders whose images (in every subfolder) are classified")
    pr.add_argument("--top-k", type=positive, default=3)
    pr.add_argument("--json", action="store_true")
    pr.add_argument("--csv", metavar="FILE", help="write one row per image: path, class, confidence, the other "
                    "top-k classes and confidences, flags ('not sure', 'unlike training')")
    pr.add_argument("--sort-into", metavar="DIR", help="copy each image into DIR/<predicted class>/ (listed in "
                    "DIR/.cnndesk-sorted.json: 'cnndesk-cli undo-sort DIR' takes it back)")
    pr.add_argument("--move", action="store_true", help="with --sort-into: move the images instead of copying them")
    pr.add_argument("--flag-folders", action="store_true", help="with --sort-into: images flagged 'unlike "
                    "training' or 'not sure' go to DIR/unlike training/ and DIR/not sure/ instead")
    pr.add_argument("--follow-outside-links", action="store_true",
                    help="also read files and folders that are links out of the folders given")
    add_run_option(pr)
    _add_preprocessing(pr)

    un = sub.add_parser("undo-sort", help="undo 'predict --sort-into DIR': delete the copies, move moved images back")
    un.add_argument("destination", metavar="DIR", help="the folder given to --sort-into")
    un.add_argument("--json", action="store_true")

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
    add_run_option(ev)
    _add_preprocessing(ev)

    ex = sub.add_parser("export", help="export the trained model")
    ex.add_argument("project", metavar="PROJECT_OR_MODEL")
    ex.add_argument("--format", choices=list(FORMATS), required=True)
    ex.add_argument("--out", required=True)
    add_run_option(ex)
    _add_map_parser(sub)


def _add_map_parser(sub) -> None:
    """The ``map`` command."""
    from ..core.data.copies import DEFAULT_DISTANCE

    m = sub.add_parser("map", help="place every image of a dataset by what the model sees: a PNG and a CSV of "
                                   "the places, copies, leaks and misclassified images marked")
    m.add_argument("model", metavar="PROJECT_OR_MODEL")
    m.add_argument("dataset", help="folder with one subfolder of images per class (the model's classes)")
    m.add_argument("--png", metavar="FILE", help="write the map as a picture")
    m.add_argument("--csv", metavar="FILE", help="write one row per image: file, class, split, x, y, predicted "
                                                 "class and a 0/1 column per highlight")
    m.add_argument("--distance", type=int, default=DEFAULT_DISTANCE,
                   help=f"hash distance of the copies marked, as for check (default {DEFAULT_DISTANCE})")
    m.add_argument("--follow-outside-links", action="store_true",
                   help="also read class folders and files that are links out of the dataset folder")
    add_run_option(m)
    _add_preprocessing(m)
    add_cache_options(m)


def _add_preprocessing(parser) -> None:
    from ..core.data.images import PIXEL_MODES

    parser.add_argument("--preprocessing", choices=list(PIXEL_MODES), metavar="{" + ",".join(PIXEL_MODES) + "}",
                        help="how pixels are fed to the model (write --preprocessing=-1-1 for the "
                             "second): " + "; ".join(PIXEL_MODES.values()) +
                             ". Default: what the project stores; for a model file, what its layers say "
                             "(keras.applications families get their own mode, a model with a Rescaling "
                             "layer 0-255, others 0-1)")

def _open_inspector(path: str, pixels: str | None = None, tell_pixels: bool = True, run: str | None = None):
    """A project folder or a .keras/.h5 file -> Inspector (+ Project or None).

    ``pixels`` (a ``PIXEL_MODES`` key) overrides the pixel mode the project stores or the model
    file's layers suggest. ``run`` names a training run of the project to open instead of its current
    model (``cnndesk-cli runs`` lists them). For a model file, the mode used and why is said on stderr (unless
    ``tell_pixels`` is False: a command that feeds no images). Class names come from the file
    (or a labels file beside it: ``mymodel.labels.txt``, else ``labels.txt``) when they fit the model's outputs.
    """
    from ..core.model.loading import load_model_with_labels
    from ..core.project.store import is_project, open_project

    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"{p} does not exist: give a project folder or a .keras or .h5 model file.")
    if run is not None:
        return _open_run_inspector(p, run, pixels)
    if not is_project(p):
        from ..core.model.keras_file import check_model_path
        from ..core.model.config_checks import code_layers, code_refusal, describe_unknown, unknown_classes

        # a damaged or hostile file, or one needing code or a class from the program that saved it, is refused
        # in a moment, before TensorFlow loads
        config = check_model_path(p)
        if code_layers(config):
            raise UserError(code_refusal(p.name))
        unknown = unknown_classes(config)
        if unknown:
            raise UserError(f"{p.name}: {describe_unknown(unknown)}.")
    import_tensorflow()
    from ..core.model.inspection import Inspector

    if is_project(p):
        project, model = open_project(p)
        if model is None:
            raise UserError(f"The project {p} has no trained model yet: train it first.")
        return Inspector(model, project.class_names, _with_pixels(project.preprocessing, pixels)), project
    from ..core.model.inspection import preprocessing_for_model
    from ..core.data.scanning import printable

    model, names = load_model_with_labels(p)
    found = preprocessing_for_model(model)
    if tell_pixels:
        print(f"{printable(p.name)}: pixels {_pixels_and_why(model, found.pixels, pixels)}", file=sys.stderr)
    ins = Inspector(model, preprocessing=_with_pixels(found, pixels))
    if names is not None and len(names) == len(ins.class_names):
        ins.class_names = list(names)
    return ins, None


def _open_run_inspector(p: Path, name: str, pixels: str | None):
    """The Inspector of the project's run called ``name`` (+ the project)."""
    from ..core.project.store import is_project, open_project

    if not is_project(p):
        raise UserError(f"--run needs a project folder; {p} is not one.")
    project, _ = open_project(p, load_model=False)
    run = run_of(project, name)
    import_tensorflow()
    from ..core.model.inspection import Inspector

    model = load_run_model(run)
    return Inspector(model, list(run.class_names), _with_pixels(run.dataset.preprocessing, pixels)), project


def _say_output_note(ins) -> None:
    """Say once, on stderr, that the model's scores are shown as probabilities (after its first prediction)."""
    if ins.output_note:
        print(f"note: {ins.output_note}", file=sys.stderr)


def _with_pixels(preprocessing, pixels: str | None):
    """``preprocessing`` with the pixel mode ``pixels`` (unchanged when None)."""
    return preprocessing if pixels is None else dataclasses.replace(preprocessing, pixels=pixels)


def _pixels_and_why(model, found: str, given: str | None) -> str:
    """"caffe (recognised as ResNet)" or "-1-1 (--preprocessing; the layers suggest caffe)"."""
    from ..core.data.images import recognise_pixels

    if given is not None:
        return given + ("" if given == found else f" (--preprocessing; the model's layers suggest {found})")
    _, why = recognise_pixels([(l.name, type(l).__name__) for l in model.layers])
    return f"{found} ({why}; --preprocessing changes it)"


def _trust(project, run: str | None):
    """The ``core.work.trust.Trust`` kept with the project's current model, or with its run ``run``; None for a model
    file, or a run trained before trust was measured."""
    if project is None:
        return None
    from ..core.work.trust import Trust, trust_of

    if run is not None:
        return Trust.from_json(run_of(project, run).trust)
    return trust_of(project.runs, project.run)


def cmd_predict(args) -> int:
    from ..core.data.scanning import printable

    if (args.move or args.flag_folders) and not args.sort_into:
        raise UserError("--move and --flag-folders sort images: give the folder to sort them into with --sort-into.")
    ins, project = _open_inspector(args.model, args.preprocessing, run=args.run)
    trust = _trust(project, args.run)
    if trust is not None:
        ins.temperature = trust.temperature
    if args.csv or args.sort_into or any(Path(p).expanduser().is_dir() for p in args.images):
        return _predict_many(args, ins, trust)
    failed = False
    results = ins.predict_files(args.images, k=args.top_k, display=False)
    _say_output_note(ins)
    for result in results:
        if isinstance(result, tuple):
            failed = True
            path, reason = result
            if args.json:
                emit_json({"path": path, "error": reason})
            else:
                print(f"{printable(str(path))}: error: {reason}", file=sys.stderr)
        elif args.json:
            emit_json(result.to_json())
        else:
            tops = ", ".join(f"{printable(c)} {p:.1%}" for c, p in result.top)
            print(f"{printable(str(result.path))}: {tops}")
    return 1 if failed else 0


def _predict_many(args, ins, trust) -> int:
    """``predict`` on folders, or with --csv or --sort-into: every image streamed through the model in batches
    (``core.batch_predict``), each row printed, written to the CSV and sorted as it comes."""
    import contextlib

    from ..core.work.classify_folder import (
        add_to_sort_log, classify_files, collect_images, CsvRows, NOT_SURE, sort_row, UNLIKE,
    )
    from ..core.model.inspection import OUTPUT_SCORES_NOTE
    from ..core.data.fixes import ChangeLog
    from ..core.data.scanning import describe_skipped, printable
    from ..core.work.trust import ModelHeads

    files, skipped = collect_images(args.images, args.follow_outside_links,
                                    [args.sort_into] if args.sort_into else [])
    for line in describe_skipped(skipped):
        print(line, file=sys.stderr)
    if not files:
        raise UserError("No image files were found in the folders given.")
    heads = ModelHeads(ins.model, ins.preprocessing)
    if heads.kind == "scores":
        print(f"note: {OUTPUT_SCORES_NOTE['softmax' if heads.units > 1 else 'sigmoid']}", file=sys.stderr)
    if trust is None or trust.novelty is None:
        print("note: this model carries no statistics of its training images (a model file, or a run trained "
              "before cnndesk measured them), so no image is flagged 'unlike training'; its probabilities are "
              "not calibrated", file=sys.stderr)
    log, counts = ChangeLog(), {"images": 0, "errors": 0, NOT_SURE: 0, UNLIKE: 0}
    with contextlib.ExitStack() as stack:
        table = stack.enter_context(CsvRows(args.csv, args.top_k)) if args.csv else None
        if args.sort_into:  # whatever was sorted is listed, even when the command stops half-way
            stack.callback(lambda: add_to_sort_log(Path(args.sort_into).expanduser(), log.changes))
        for row in classify_files(files, heads, ins.class_names, trust, k=args.top_k):
            counts["images"] += 1
            if row.error is not None:
                counts["errors"] += 1
                if args.json:
                    emit_json(row.to_json())
                else:
                    print(f"{printable(row.path)}: error: {row.error}", file=sys.stderr)
            else:
                for flag in row.flags:
                    counts[flag] += 1
                if args.json:
                    emit_json({**row.to_json(), "top": row.to_json()["top"][:args.top_k]})
                else:
                    tops = ", ".join(f"{printable(c)} {p:.1%}" for c, p in row.top[:args.top_k])
                    print(f"{printable(row.path)}: {tops}" + (f"  [{', '.join(row.flags)}]" if row.flags else ""))
            if table is not None:
                table.write(row)
            if args.sort_into:
                sort_row(row, Path(args.sort_into).expanduser(), log, args.move, args.flag_folders)
    print(f"{counts['images']:,} images: {counts['errors']:,} unreadable, {counts[NOT_SURE]:,} not sure, "
          f"{counts[UNLIKE]:,} unlike training", file=sys.stderr)
    if args.csv:
        print(f"rows written to {printable(str(Path(args.csv).expanduser()))}", file=sys.stderr)
    if args.sort_into:
        print(f"{'moved' if args.move else 'copied'} {len(log.changes):,} images into "
              f"{printable(str(Path(args.sort_into).expanduser()))}/<class>/ (undo: cnndesk-cli undo-sort "
              f"{printable(args.sort_into)})", file=sys.stderr)
    return 1 if counts["errors"] else 0


def cmd_undo_sort(args) -> int:
    """Undo every ``predict --sort-into DIR`` into DIR that DIR's list holds, newest first."""
    from ..core.data.scanning import printable
    from ..core.work.classify_folder import undo_sort

    undone, problems = undo_sort(args.destination)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if args.json:
        emit_json({"undone": undone, "not_undone": problems})
    else:
        print(f"undid {undone:,} sorted images in {printable(str(Path(args.destination).expanduser()))}"
              + (f"; {len(problems):,} could not be undone and stay listed" if problems else ""))
    return 1 if problems else 0


def cmd_inspect(args) -> int:
    import numpy as np
    from PIL import Image

    from ..core.data.scanning import printable
    from ..core.model.inspection import EMPTY_CAM_NOTE
    from ..core.model.pictures import CAM_SMOOTH_SIGMA, channel_grid, gradcam_overlay, smooth_map

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
        with fsutil.replacing(path) as tmp:
            Image.fromarray(channel_grid(m)).save(tmp)
        written.append(path)
    if ins.has_maps:
        cam = ins.gradcam(image, ci, args.layer, args.method)
        if not np.any(cam):
            layer = printable(args.layer or ins.default_cam_layer)
            print(f"note: the heat map at {layer} is empty. {EMPTY_CAM_NOTE} (--layer, --method gradcam)",
                  file=sys.stderr)
        path = out / f"gradcam_{ins.class_names[ci].replace(os.sep, '_')}.png"
        with fsutil.replacing(path) as tmp:
            Image.fromarray(gradcam_overlay(image, smooth_map(cam, CAM_SMOOTH_SIGMA), 0.5)).save(tmp)  # as the app
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
    from ..core.data.dataset import load_dataset
    from ..core.data.scanning import printable
    from ..core.project.store import open_project

    project, _ = open_project(args.project, load_model=False)  # a damaged project.json fails before TF loads
    run = None
    if args.run is not None:
        run = run_of(project, args.run)
    import_tensorflow()
    if run is not None:  # the run's model, evaluated on the data settings it was trained with
        model, class_names, config = load_run_model(run), list(run.class_names), run.dataset
    else:
        project, model = open_project(args.project)
        class_names, config = project.class_names, project.dataset
    if model is None:
        raise UserError(f"The project {args.project} has no trained model yet: train it first.")
    dataset = args.dataset or project.dataset_path
    if not dataset:
        raise UserError("The project names no dataset folder; pass --dataset.")
    data = load_dataset(dataset, config, follow_outside_links=args.follow_outside_links)
    if data.class_names != class_names:
        raise UserError(f"The dataset's classes ({', '.join(map(printable, data.class_names))}) differ from the "
                        f"project's ({', '.join(map(printable, class_names))}).")
    from ..core.model.inspection import Inspector

    ins = Inspector(model, class_names, _with_pixels(config.preprocessing, args.preprocessing))
    x, y = data.rows(data.val_index), data.labels[data.val_index]
    if len(y) == 0:
        raise UserError("The project's validation split is empty (split 0), so there is nothing to evaluate on; "
                        "train with --val-split above 0.")
    trust = _trust(project, args.run)
    calibration = _calibration(ins, x, y, trust)
    if trust is not None:
        ins.temperature = trust.temperature
    ev = ins.evaluate(x, y, [data.paths[i] for i in data.val_index])
    _say_output_note(ins)
    if args.json:
        emit_json({**ev.to_json(), "calibration": calibration})
        return 0
    print(f"accuracy {with_interval(ev.accuracy, ev.images)} on the validation split")
    if calibration["declined"]:
        how = f"not calibrated ({calibration['declined']})"
    else:
        how = (f"temperature {calibration['temperature']:.3g}"
               + (" (fitted now: the run kept none)" if calibration["fitted"] else ""))
    print(f"calibration: {how}; expected calibration error "
          f"{calibration['ece_before']:.1%} before, {calibration['ece_after']:.1%} after"
          + (f"; {calibration['unlike_training']:.1%} flagged unlike training" if "unlike_training" in calibration
             else ""))
    names = [printable(n) for n in ev.class_names]
    width = max(len(n) for n in names)
    print(f"{'class':<{width}}  precision  recall  recall 95 % interval     f1  support")
    for name, m in zip(names, ev.per_class):
        spread = interval_range(m.recall, m.support) if m.support else "-"
        print(f"{name:<{width}}  {m.precision:9.3f}  {m.recall:6.3f}  {spread:>20}  {m.f1:5.3f}  {m.support:7d}")
    print("confusion matrix (rows: true, columns: predicted)")
    print(" " * width + "  " + " ".join(f"{n[:6]:>6}" for n in names))
    for name, row in zip(names, ev.confusion):
        print(f"{name:<{width}}  " + " ".join(f"{v:6d}" for v in row))
    return 0


def _calibration(ins, images, labels, trust) -> dict:
    """``core.calibration.calibration_report`` of the images with the run's temperature (fitted on them when the
    run kept none), and the share of them flagged "unlike training" when the run kept its statistics."""
    import numpy as np

    from ..core.model.calibration import calibration_report
    from ..core.model.inspection import EVALUATION_CHUNK
    from ..core.work.trust import ModelHeads

    heads = ModelHeads(ins.model, ins.preprocessing)
    novelty = trust.novelty if trust is not None else None
    logits, flagged = [], 0
    for start in range(0, len(labels), EVALUATION_CHUNK):
        features, z = heads(images[start:start + EVALUATION_CHUNK])
        logits.append(z)
        if novelty is not None:
            flagged += int(novelty.unlike(features).sum())
    report = calibration_report(np.concatenate(logits), labels, trust.temperature if trust is not None else None)
    if trust is not None and not trust.calibrated:
        report["declined"] = trust.uncalibrated_reason
    if novelty is not None:
        report["unlike_training"] = flagged / max(len(labels), 1)
    return report


def cmd_export(args) -> int:
    from ..core.model.export import export_model, labels_path

    ins, project = _open_inspector(args.project, tell_pixels=False, run=args.run)
    trust = _trust(project, args.run)
    out = export_model(ins.model, args.format, args.out, ins.class_names,
                       temperature=trust.temperature if trust is not None else None)
    print(out)
    print(f"class names: {labels_path(out, args.format)}")
    return 0


def cmd_map(args) -> int:
    """Read the dataset as the model takes it (a project's own split and settings), map it, write the files."""
    from ..core.data.dataset import DatasetConfig, load_dataset
    from ..core.data.scanning import printable
    from ..core.tasks import ReportingTaskState
    from ..core.work.dataset_map import dataset_map, write_png

    if not args.png and not args.csv:
        raise UserError("Say what to write: --png FILE, --csv FILE or both.")
    ins, project = _open_inspector(args.model, args.preprocessing, run=args.run)
    config = DatasetConfig(ins.preprocessing, duplicate_distance=args.distance)
    if project is not None:  # the project's split, so that training and validation are the ones it trained on
        config = dataclasses.replace(project.dataset, preprocessing=ins.preprocessing, duplicate_distance=args.distance)
    data = load_dataset(args.dataset, config, follow_outside_links=args.follow_outside_links,
                        cache=cache_settings(args))
    if project is not None and data.class_names != list(ins.class_names):
        raise UserError(f"The dataset's classes ({', '.join(map(printable, data.class_names))}) differ from the "
                        f"project's ({', '.join(map(printable, ins.class_names))}).")
    state = ReportingTaskState(status=lambda text: print(text, file=sys.stderr))
    result = dataset_map(ins.model, data, args.distance, state=state)
    print(result.summary())
    for note in result.notes:
        print(note, file=sys.stderr)
    if args.csv:
        result.write_csv(args.csv, data.paths, data.class_names)
        print(f"wrote {args.csv}")
    if args.png:
        write_png(result, data.class_names, args.png)
        print(f"wrote {args.png}")
    return 0
