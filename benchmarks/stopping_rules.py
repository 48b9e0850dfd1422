"""Measure early-stopping and keep-the-best rules on the small real datasets of ``small_data.py``.

Trains the seed preset through cnndesk's core with early stopping and
keep-the-best both off, for ``--epochs`` epochs, and after every epoch records
validation loss/accuracy and the held-out accuracy of the weights of that
epoch. A run with the same seed is the same for its first k epochs whatever
the planned length (Adam at a constant rate), so one recording answers, for any
stopping rule and any run length up to ``--epochs``: at which epoch would the
rule stop, which epoch would it keep, and how good is that epoch on the
held-out images. The table lists mean held-out accuracy per rule and dataset.

Usage:
    .venv/bin/python benchmarks/stopping_rules.py [--datasets ...] [--seeds 1337,1,2,3,4] [--epochs 20]
        [--record FILE.jsonl] [--replay FILE.jsonl]

``--record`` writes the per-epoch recordings; ``--replay`` reads them back
instead of training (the rules can then be changed and compared in seconds).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import numpy as np  # noqa: E402

from small_data import DATASETS, _accuracy, _config, write_folders  # noqa: E402


def record(name: str, train_dir: Path, test_dir: Path, seed: int, epochs: int) -> dict:
    from cnndesk.core.model.architecture import build_model, preset, TrainingSettings
    from cnndesk.core.data.dataset import load_dataset
    from cnndesk.core.training.progress import TrainingListener
    from cnndesk.core.training.fitting import train

    config = _config(name, seed)
    data = load_dataset(train_dir, config)
    test = load_dataset(test_dir, config.__class__(config.preprocessing, val_split=0.0))
    model = build_model(preset("seed"), data.preprocessing.input_shape, data.num_classes)
    rows = []

    class Listener(TrainingListener):
        def on_epoch(self, r):
            rows.append({"epoch": r.epoch, "val_loss": r.val_loss, "val_accuracy": r.val_accuracy,
                         "loss": r.loss, "held_out": _accuracy(model, test.images, test.labels)})

    settings = TrainingSettings(epochs=epochs, seed=seed, patience=0, restore_best=False)
    # the settings that turn every stopping rule off: fields that did not exist before are set when present
    for key, value in (("min_epochs", 0), ("min_val_images", 0)):
        if hasattr(settings, key):
            setattr(settings, key, value)
    train(data, [], settings, Listener(), model=model)
    return {"dataset": name, "seed": seed, "n_val": len(data.val_index), "classes": data.num_classes, "rows": rows}


# ---------------------------------------------------------------------------
# rules, replayed on a recording

def stop_epoch(rows: list[dict], run: int, rule: dict) -> int:
    """The number of epochs a run of ``run`` epochs trains under ``rule`` (no stop: ``run``)."""
    if rule.get("off"):
        return run
    patience = rule["patience"]
    if rule.get("scale"):
        patience = max(patience, math.ceil(run * rule["scale"]))
    minimum = max(rule.get("min", 0), math.ceil(run * rule.get("min_share", 0)))
    best_loss, best_acc, since = math.inf, -1.0, 0
    for i, r in enumerate(rows[:run], 1):
        improved = r["val_loss"] < best_loss
        if rule.get("acc_aware"):
            improved = improved or r["val_accuracy"] > best_acc
        best_loss, best_acc = min(best_loss, r["val_loss"]), max(best_acc, r["val_accuracy"])
        since = 0 if improved else since + 1
        if since >= patience and i >= minimum and i < run:
            return i
    return run


def kept_epoch(rows: list[dict], trained: int, how: str, n_val: int = 0) -> int:
    part = rows[:trained]
    if how == "last":
        return trained
    if how == "val_loss":
        return min(range(trained), key=lambda i: part[i]["val_loss"]) + 1
    if how == "val_acc_1":
        # validation accuracy, where one validation image more or less counts as a tie; ties: lower loss
        top = max(r["val_accuracy"] for r in part)
        near = [i for i in range(trained) if part[i]["val_accuracy"] >= top - 1.0 / n_val - 1e-9]
        return min(near, key=lambda i: part[i]["val_loss"]) + 1
    # validation accuracy, ties broken by the lower validation loss
    return min(range(trained), key=lambda i: (-part[i]["val_accuracy"], part[i]["val_loss"])) + 1


RULES = {
    # the rule before issue 21
    "before: patience 3 on val_loss, keep lowest val_loss": (dict(patience=3), "val_loss"),
    "no early stopping, keep last (= plain script)": (dict(off=True), "last"),
    "no early stopping, keep best val_acc": (dict(off=True), "val_acc"),
    "patience 3 on val_loss, keep best val_acc": (dict(patience=3), "val_acc"),
    "patience 3 acc-aware, keep best val_acc": (dict(patience=3, acc_aware=True), "val_acc"),
    "patience 3 acc-aware, min 5, keep best val_acc": (dict(patience=3, acc_aware=True, min=5), "val_acc"),
    "patience 3 acc-aware, min half the run, keep best val_acc":
        (dict(patience=3, acc_aware=True, min_share=0.5), "val_acc"),
    "patience max(3, run/4) acc-aware, min half the run, keep best val_acc":
        (dict(patience=3, scale=0.25, acc_aware=True, min_share=0.5), "val_acc"),
    "no early stopping, keep best val_acc (1 image = tie)": (dict(off=True), "val_acc_1"),
    "patience max(3, run/4) acc-aware, min half the run, keep best val_acc (1 image = tie)":
        (dict(patience=3, scale=0.25, acc_aware=True, min_share=0.5), "val_acc_1"),
    "patience max(3, run/4) acc-aware, min half the run, keep last":
        (dict(patience=3, scale=0.25, acc_aware=True, min_share=0.5), "last"),
}


def replay(recordings: list[dict], runs: list[int], min_val_images: int) -> None:
    names = list(dict.fromkeys(r["dataset"] for r in recordings))
    for run in runs:
        print(f"\n## runs of {run} epochs (early stopping off below {min_val_images} validation images "
              f"where marked *)\n")
        print("| rule | " + " | ".join(names) + " | worst vs plain |")
        print("|---|" + "---|" * (len(names) + 1))
        plain = {n: np.mean([r["rows"][run - 1]["held_out"] for r in recordings if r["dataset"] == n])
                 for n in names}
        for label, (rule, how) in RULES.items():
            for gate in (False, True):
                if gate and rule.get("off"):
                    continue
                cells, worst = [], math.inf
                for n in names:
                    accs, stops = [], []
                    for rec in (r for r in recordings if r["dataset"] == n):
                        effective = dict(off=True) if gate and rec["n_val"] < min_val_images else rule
                        trained = stop_epoch(rec["rows"], run, effective)
                        kept = kept_epoch(rec["rows"], trained, how, rec["n_val"])
                        accs.append(rec["rows"][kept - 1]["held_out"])
                        stops.append(f"{kept}/{trained}")
                    worst = min(worst, np.mean(accs) - plain[n])
                    cells.append(f"{np.mean(accs):.3f} ({' '.join(stops)})")
                print(f"| {label}{' *' if gate else ''} | " + " | ".join(cells) + f" | {worst:+.3f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--seeds", default="1337,1,2,3,4")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--runs", default="10,20", help="run lengths to replay the rules on")
    ap.add_argument("--min-val-images", type=int, default=50)
    ap.add_argument("--record", help="write the recordings to this JSON-lines file")
    ap.add_argument("--replay", help="read recordings from these JSON-lines files (comma-separated) instead of "
                    "training")
    a = ap.parse_args()
    if a.replay:
        recordings = [json.loads(line) for f in a.replay.split(",")
                      for line in Path(f).read_text().splitlines() if line.strip()]
    else:
        recordings = []
        base = Path(tempfile.mkdtemp(prefix="cnndesk-stopping-"))
        out = open(a.record, "a") if a.record else None
        for name in a.datasets.split(","):
            train_dir, test_dir = write_folders(name, base)
            for seed in (int(s) for s in a.seeds.split(",")):
                rec = record(name, train_dir, test_dir, seed, a.epochs)
                recordings.append(rec)
                print(f"recorded {name} seed {seed}", file=sys.stderr, flush=True)
                if out:
                    out.write(json.dumps(rec) + "\n")
                    out.flush()
    runs = [int(r) for r in a.runs.split(",") if int(r) <= min(len(r_["rows"]) for r_ in recordings)]
    replay(recordings, runs, a.min_val_images)
    return 0


if __name__ == "__main__":
    sys.exit(main())
