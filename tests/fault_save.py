"""Fault harness for project saves: kill a saving process at every step of a save, many times.

Run by ``tests/test_project.py`` as ``python tests/fault_save.py FOLDER MODE``; prints one JSON report.
It runs in its own process, which imports no TensorFlow and starts no threads, so it can fork one
saving child per kill cheaply. The children save with a stand-in model whose file names the save
it belongs to (``gen=N``), written in several chunks, so that a check can tell whether the project
that opens is whole: its ``run`` and its model file must name the same save.

Modes:
    steps       for every step of a save (found by a counting run), fork a child that saves and is
                SIGKILLed at that step; after each kill the project must open whole (old or new),
                then a normal save must leave no debris. Every step is hit ``REPEATS`` times.
    pileup      many killed saves in a row with no save in between, then one open and one save.
    random      a child saving in a loop is SIGKILLed after a random delay, many times.
    concurrent  two children save into one folder in a loop while this process opens it again and
                again: every open must be whole, and a refused save must name the other writer.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from pathlib import Path

from cnndesk.core.project import store as P
from cnndesk.core.errors import ModelFileError, ProjectError

CHUNKS = 4
CHUNK = 32 * 1024
REPEATS = 3


class FakeModel:
    """Stands in for a Keras model: ``save`` writes a file naming its save, in chunks (a step after each)."""

    def __init__(self, gen: int):
        self.gen = gen

    def save(self, path):
        with open(path, "wb") as f:
            f.write(f"fault-test gen={self.gen}\n".encode())
            for _ in range(CHUNKS):
                f.write(bytes([self.gen % 251]) * CHUNK)
                f.flush()
                P._step("model chunk")


def fake_load(path):
    """What ``open_project`` would load: the save number written in the (complete) model file."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:  # as the real loader says it
        raise ModelFileError(f"The model file {path} does not exist.") from e
    head, _, body = data.partition(b"\n")
    gen = int(head.decode().split("=")[1])
    assert len(body) == CHUNKS * CHUNK and body == bytes([gen % 251]) * len(body), "a torn model file"
    return gen


P.load_keras_model = fake_load


def save(folder: Path, gen: int) -> None:
    p = P.Project(class_names=["a", "b"], history=[{"epoch": gen}], run=f"gen-{gen}")
    P.save_project(folder, p, FakeModel(gen))


def check_whole(folder: Path, allowed: set[int], clean: bool) -> int:
    """Open the project (without its clean-up unless ``clean``); it must be one of ``allowed``, whole."""
    if clean:
        project, gen = P.open_project(folder)
    else:
        with P.ProjectLock(folder):  # held, so open_project's clean-up steps aside
            project, gen = P.open_project(folder)
    assert project.run == f"gen-{gen}", f"project.json of {project.run} with the model of gen-{gen}"
    assert project.history == [{"epoch": gen}]
    assert gen in allowed, f"gen {gen} opened, expected one of {sorted(allowed)}"
    return gen


def debris(folder: Path) -> list[str]:
    """Everything in the folder besides project.json and the version folders it keeps."""
    d = json.loads((folder / P.PROJECT_FILE).read_text())
    keep = P._kept_versions(d)
    extra = [n for n in os.listdir(folder) if n not in (P.PROJECT_FILE, P.VERSIONS_DIR)]
    vdir = folder / P.VERSIONS_DIR
    if vdir.is_dir():
        extra += [f"{P.VERSIONS_DIR}/{n}" for n in os.listdir(vdir) if n not in keep]
        for v in keep:
            inside = sorted(os.listdir(vdir / v))
            if inside != [P.MODEL_FILE]:
                extra.append(f"{P.VERSIONS_DIR}/{v}: {inside}")
    return extra


def count_steps(folder: Path, gen: int) -> list[str]:
    steps = []
    real = P._step
    P._step = steps.append
    try:
        save(folder, gen)
    finally:
        P._step = real
    return steps


def killed_save(folder: Path, gen: int, at: int | None = None, delay: float | None = None, loop: bool = False) -> bool:
    """Fork a child that saves ``gen`` (again and again with ``loop``) and is SIGKILLed at step ``at``
    or after ``delay`` seconds. True when the kill landed before the child finished."""
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            if at is not None:
                n = [0]

                def step(name):
                    n[0] += 1
                    if n[0] == at:
                        os.kill(os.getpid(), signal.SIGKILL)

                P._step = step
            g = gen
            while True:
                save(folder, g)
                if not loop:
                    break
                g += 1
        finally:
            os._exit(0)
    if delay is not None:
        time.sleep(delay)  # the fault itself: a kill at a random moment of the saves, not a wait for something
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def mode_steps(folder: Path) -> dict:
    save(folder, 1)
    save(folder, 2)
    steps = count_steps(folder, 3)
    assert not debris(folder), debris(folder)
    committed = 3
    gen = 3
    kills = 0
    seen = {"old": 0, "new": 0}
    debris_after_kill = 0
    for repeat in range(REPEATS):
        for at in range(1, len(steps) + 1):
            gen += 1
            assert killed_save(folder, gen, at=at), f"the child outlived step {at}"
            kills += 1
            got = check_whole(folder, {committed, gen}, clean=False)
            seen["old" if got == committed else "new"] += 1
            debris_after_kill += bool(debris(folder))
            committed = got
            gen += 1
            save(folder, gen)  # the next save removes what the killed one left
            left = debris(folder)
            assert not left, f"after a kill at step {at} ({steps[at - 1]}) and a save: {left}"
            committed = check_whole(folder, {gen}, clean=True)
    return {"steps": steps, "kills": kills, "opened_old": seen["old"], "opened_new": seen["new"],
            "kills_that_left_debris": debris_after_kill}


def mode_pileup(folder: Path, tries: int = 40) -> dict:
    save(folder, 1)
    committed, gen = 1, 1
    steps = len(count_steps(folder, 2))
    committed = gen = 2
    rng = random.Random(12)
    left = 0
    for _ in range(tries):
        gen += 1
        assert killed_save(folder, gen, at=rng.randint(1, steps))
        committed = check_whole(folder, {committed, gen}, clean=False)
    left = len(debris(folder))
    check_whole(folder, {committed}, clean=True)  # an open cleans up too
    after_open = debris(folder)
    assert not after_open, after_open
    gen += 1
    save(folder, gen)
    assert not debris(folder)
    check_whole(folder, {gen}, clean=True)
    return {"kills": tries, "debris_before_open": left}


def mode_random(folder: Path, tries: int = 60) -> dict:
    save(folder, 1)
    rng = random.Random(7)
    gen, committed = 100, 1
    landed = 0
    for _ in range(tries):
        gen += 1000  # the child saves gen, gen+1, ... until it is killed
        landed += killed_save(folder, gen, delay=rng.uniform(0.0, 0.03), loop=True)
        got = check_whole(folder, set(range(gen, gen + 1000)) | {committed}, clean=False)
        committed = got
    gen += 1000
    save(folder, gen)
    assert not debris(folder), debris(folder)
    return {"kills": landed, "tries": tries}


def mode_concurrent(folder: Path, seconds: float = 2.0) -> dict:
    save(folder, 1)
    children = []
    for w in range(2):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                end = time.monotonic() + seconds
                g = (w + 1) * 1_000_000
                saved = busy = 0
                rng = random.Random(w)
                while time.monotonic() < end:
                    g += 1
                    time.sleep(rng.uniform(0, 0.005))  # a user's saves are not back to back
                    try:
                        save(folder, g)
                        saved += 1
                    except ProjectError as e:
                        assert "is being saved by process" in str(e), str(e)
                        busy += 1
                (folder.parent / f"writer{w}.json").write_text(json.dumps({"saved": saved, "busy": busy}))
            except BaseException as e:  # noqa: BLE001 - reported through the exit code
                print(f"writer {w}: {e!r}", file=sys.stderr)
                code = 1
            os._exit(code)
        children.append(pid)
    reads = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        project, gen = P.open_project(folder)
        assert project.run == f"gen-{gen}", f"mixed: project.json of {project.run}, model of gen-{gen}"
        reads += 1
    for pid in children:
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "a writer failed"
    writers = [json.loads((folder.parent / f"writer{w}.json").read_text()) for w in range(2)]
    save(folder, 5)
    assert not debris(folder)
    return {"reads": reads, "writers": writers}


if __name__ == "__main__":
    folder, mode = Path(sys.argv[1]), sys.argv[2]
    started = time.perf_counter()
    report = {"steps": mode_steps, "pileup": mode_pileup, "random": mode_random,
              "concurrent": mode_concurrent}[mode](folder)
    report["seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(report))
