"""What keeping every training run costs: the scratch copy after each run, and a project save with many runs.

After each training the app writes the new model to a scratch file (``EngineWorker.keep_run``), so
that the run survives the model leaving memory. This times that write next to the training it
follows, alternating train and write in one process (so a busy machine slows both alike), and then
times project saves holding 1 and N runs (each run's weights are written once; a save of a project
whose runs are all committed writes only project.json and the current model).

    .venv/bin/python benchmarks/run_keeping.py              # ~1-2 min on 2 cores
    .venv/bin/python benchmarks/run_keeping.py --runs 8 --preset deeper --size 96
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--preset", default="seed")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--per-class", type=int, default=40)
    args = p.parse_args()

    from _data import ensure_dataset

    from cnndesk.core.model.architecture import preset, TrainingSettings
    from cnndesk.core.data.dataset import DatasetConfig, load_dataset
    from cnndesk.core.data.images import Preprocessing
    from cnndesk.core.training.model_pool import ModelPool
    from cnndesk.core.project.store import Project, save_project
    from cnndesk.core.training.runs import Run
    from cnndesk.core.training.fitting import train

    folder = ensure_dataset(None, args.per_class, args.size)
    data = load_dataset(folder, DatasetConfig(Preprocessing((args.size, args.size))))
    layers = preset(args.preset)
    settings = TrainingSettings(epochs=1, batch_size=32)
    pool = ModelPool()
    work = Path(tempfile.mkdtemp(prefix="cnndesk-run-keeping-"))
    train_s, keep_s, sizes, runs = [], [], [], []
    model = None
    for i in range(args.runs + 1):  # the first run traces the model: left out of the figures
        if model is not None:
            pool.give_back(model)
        t0 = time.perf_counter()
        result = train(data, layers, settings, pool=pool)
        t1 = time.perf_counter()
        model = result.model
        path = work / f"run{i}" / "model.keras"
        path.parent.mkdir()
        model.save(path)  # what keep_run does
        t2 = time.perf_counter()
        runs.append(Run(id=f"run{i}", name=f"Run {i + 1}", history=tuple(result.history), file=str(path)))
        if i:
            train_s.append(t1 - t0)
            keep_s.append(t2 - t1)
            sizes.append(path.stat().st_size)
    print(f"{args.preset} at {args.size} px, {len(data.train_index)} training images, 1 epoch per run, "
          f"{args.runs} runs after a warm-up run")
    print(f"training: median {statistics.median(train_s):.2f} s; scratch copy of the model: median "
          f"{statistics.median(keep_s) * 1000:.0f} ms ({statistics.median(keep_s) / statistics.median(train_s):.1%} "
          f"of the training), {statistics.median(sizes) / 1e3:.0f} kB")
    counts = (1, len(runs))
    first, again = {}, {c: [] for c in counts}
    for count in counts:
        t0 = time.perf_counter()
        save_project(work / f"project-{count}", Project(run=runs[count - 1].id, runs=runs[:count]), model)
        first[count] = time.perf_counter() - t0
    for _ in range(5):  # saves again, alternating between the two projects
        for count in counts:
            t0 = time.perf_counter()
            save_project(work / f"project-{count}", Project(run=runs[count - 1].id, runs=runs[:count]), model)
            again[count].append(time.perf_counter() - t0)
    for count in counts:
        print(f"project with {count} run(s): first save {first[count] * 1000:.0f} ms, saved again "
              f"(median of 5) {statistics.median(again[count]) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
