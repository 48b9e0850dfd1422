"""``cnndesk-cli runs``, and what the commands taking ``--run NAME`` share: finding a run and loading its model."""

from __future__ import annotations

import time

from ..core.errors import UserError
from .support import emit_json


def run_of(project, name: str):
    """The run of ``project`` called ``name`` (its name or id), with weights that can be loaded."""
    from ..core.training.runs import find_run

    run = find_run(project.runs, name)
    if run.file is None:
        raise UserError(f"The weights of run {name!r} were not kept in the project, so it cannot be used.")
    return run


def load_run_model(run):
    """The Keras model of ``run`` (TensorFlow must be loaded)."""
    from ..core.model.loading import load_keras_model

    return load_keras_model(run.file)


def add_parser(sub) -> None:
    """The ``runs`` command."""
    ru = sub.add_parser("runs", help="list a project's training runs with their key figures")
    ru.add_argument("project")
    ru.add_argument("--json", action="store_true", help="one JSON object per run")


def add_run_option(parser) -> None:
    """``--run NAME``, for the commands that can use any run of a project."""
    parser.add_argument("--run", metavar="NAME", help="use this training run of the project (its name or id, as "
                        "`cnndesk-cli runs PROJECT` lists them) instead of its current model")


def cmd_runs(args) -> int:
    from ..core.project.store import open_project
    from ..core.data.scanning import printable

    project, _ = open_project(args.project, load_model=False)
    if args.json:
        for run in project.runs:
            emit_json({**run.summary(), "current": run.id == project.run})
        return 0
    if not project.runs:
        print(f"{args.project}: no runs yet (train the project first)")
        return 0
    rows = [("", "name", "id", "date", "epochs", "best val acc", "best val loss", "final loss/acc/val loss/val acc",
             "probe frames", "group", "note")]
    for run in project.runs:
        final = run.final
        rows.append(("*" if run.id == project.run else "", printable(run.name), run.id,
                     time.strftime("%Y-%m-%d %H:%M", time.localtime(run.created)) if run.created else "-",
                     str(run.epochs), "-" if run.best("val_accuracy") is None else run.best_accuracy_text(),
                     _num(run.best("val_loss"), ".4f"),
                     "/".join(_num(final.get(k)) for k in ("loss", "accuracy", "val_loss", "val_accuracy")),
                     "-" if run.probe_frames is None else str(run.probe_frames), run.group_text() or "-",
                     printable(run.note)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    print("* the current model")
    return 0


def _num(value, fmt: str = ".3f") -> str:
    return "-" if value is None else f"{value:{fmt}}"
