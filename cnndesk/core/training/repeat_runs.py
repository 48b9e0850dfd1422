"""Train ×N without Keras: what may be asked, the seeds, the "Model 2 of 5" report and the runs of one group.

The window imports this module when it starts (the ×N choice, the runs a Train ×N adds), the engine thread
``core.training.repeats``, which trains them with Keras. A Train ×``count`` trains with the seeds ``seed,
seed + 1, …`` (:func:`member_seeds`); each member is recorded as a run of its own (``core.training.runs.new_run``
with the group's id, :func:`group_runs`), and an ensemble as one more run naming them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError
from .runs import new_run

#: what a Train ×N keeps
KEEP = ("best", "ensemble")
#: the most models one Train ×N trains
MOST = 20


@dataclass(frozen=True)
class MemberStarted:
    """Reported before each member trains: "Model 2 of 5 (seed 1338)"."""

    index: int  # 1-based
    count: int
    seed: int

    def __str__(self) -> str:
        return f"Model {self.index} of {self.count} (seed {self.seed})"


def member_seeds(seed: int, count: int) -> list[int]:
    """The seeds of a Train ×``count`` from ``seed``: the first is the seed a single training would use."""
    return [seed + i for i in range(count)]


def check_request(count: int, keep: str) -> None:
    """Refuse a Train ×N that cannot be: too few or too many models, or an unknown thing to keep."""
    if not 2 <= count <= MOST:
        raise UserError(f"Train ×N trains between 2 and {MOST} models (asked for {count}).")
    if keep not in KEEP:
        raise UserError(f"Keep {keep!r}? Choose {' or '.join(KEEP)}.")


def group_runs(runs, repeats, run_ids, *, ensemble_id: str | None, class_names, dataset_path, preset: str,
               layers, batch_losses=None) -> list:
    """The runs a Train ×N adds after ``runs``: one per member (ids ``run_ids``), and the ensemble's (``ensemble_id``)
    when one was kept; all in one group (the first member's id), each with the group's spread. The member kept as
    the best says so in its kept sentence. Their weights are not kept yet (``Run.file`` is None), as ``new_run``'s.

    Args:
        repeats: what ``core.training.repeats.train_repeats`` gave back (its models may be gone: not read here).
        batch_losses: each member's batch-loss line (``Run.batch_loss``), when drawn.
    """
    group, spread = run_ids[0], repeats.spread.to_json()
    out = []
    for i, (member, run_id) in enumerate(zip(repeats.members, run_ids)):
        kept = member.result.kept_message
        if repeats.best == i:
            kept = f"{kept} {repeats.message}".strip()
        out.append(new_run([*runs, *out], run_id, class_names=class_names, dataset=member.config,
                           dataset_path=dataset_path, preset=preset, layers=layers, settings=member.settings,
                           history=member.result.history, best_epoch=member.result.best_epoch, kept_message=kept,
                           batch_loss=batch_losses[i] if batch_losses else (), group=group, spread=spread))
    if repeats.kept == "ensemble":
        if ensemble_id is None:
            raise ValueError("an ensemble's run needs an id")
        first = repeats.finished[0]
        out.append(new_run([*runs, *out], ensemble_id, class_names=class_names, dataset=first.config,
                           dataset_path=dataset_path, preset=preset, layers=layers, settings=first.settings,
                           history=repeats.history, best_epoch=None, kept_message=repeats.message, group=group,
                           members=[run_ids[repeats.members.index(m)] for m in repeats.finished], spread=spread))
    return out


def kept_run_id(repeats, run_ids, ensemble_id: str | None) -> str:
    """The id of the run whose model a Train ×N keeps: the ensemble's, or the best member's."""
    return ensemble_id if repeats.kept == "ensemble" else run_ids[repeats.best]
