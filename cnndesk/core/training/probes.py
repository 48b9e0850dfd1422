"""Probe images: what the network sees in a few chosen images, recorded while it trains.

Up to ``MAX_PROBES`` images are *probes*. After every epoch (and, when asked,
every N batches) ``ProbeRecorder``, a Keras callback, records a ``ProbeFrame``:
for each probe the top-k prediction, the activation maps of the selected
layers (the first ``MAX_CHANNELS`` channels, shrunk to at most ``MAP_SIDE`` ×
``MAP_SIDE``, as uint8), the heat map for its true class (smoothed as the
viewer draws it: ``core.pictures.smooth_map``), and the first convolution's filters. It asks the model through an ``Inspector`` built once
per model (a pooled model keeps it, see ``inspector_for``), so nothing is
traced again per frame.

A ``ProbeRecording`` keeps the frames within a byte budget
(``DEFAULT_BUDGET``): when a new frame would pass it, every second of the
older frames is dropped and later frames are kept at the same coarser step
(the newest is always kept), so a long run keeps its whole span at an even
step, never a random hole. It saves to and loads from
one folder (``recording.json`` + ``frames.npz``), self-contained, so a project
or a run can carry it. Figures: docs/probes.md.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .. import fsutil
from ..data.images import decode_image
from ..errors import UserError
from ..model.pictures import CAM_SMOOTH_SIGMA, smooth_map

#: how many probe images a recording follows
MAX_PROBES = 4
#: channels of each layer a frame keeps (the first ones: the same channels in every frame)
MAX_CHANNELS = 8
#: a kept map's longest side, in cells; larger maps are shrunk by averaging blocks
MAP_SIDE = 32
#: layers a recording follows unless told which: the convolutions, spread over the network
MAX_LAYERS = 6
#: first-layer filters a frame keeps
MAX_FILTERS = 16
#: predictions a frame keeps per probe
TOP_K = 5
#: bytes of frames a recording holds before it thins its older frames (see the module docstring)
DEFAULT_BUDGET = 16 * 1024 * 1024
#: the files of a saved recording
META_FILE, ARRAYS_FILE = "recording.json", "frames.npz"
FORMAT_VERSION = 1


@dataclass
class Probe:
    """One probe image as the model sees it (uint8 (H, W, C)), its name and, when known, its true class."""

    name: str
    image: np.ndarray
    true_class: int | None = None
    path: str | None = None


@dataclass
class ProbeFrame:
    """What the network made of every probe at one moment of training.

    Attributes:
        epoch: the epochs trained so far (1-based at an epoch's end; 2.5 is halfway through epoch 3).
        top: (probes, k) class indices, best first; ``top_p`` their probabilities.
        maps: per followed layer, (probes, channels, h, w) uint8, each channel scaled to its own range;
            ``ranges`` holds that range, (probes, channels, 2) float32 (low, high).
        cams: (probes, h, w) uint8 heat maps for each probe's true (else predicted) class, smoothed by
            ``ProbeRecording.cam_sigma`` map cells as the viewer draws them, or None.
        filters: (filters, k, k, in channels) uint8 first-layer kernels, scaled together, or None.
    """

    epoch: float
    top: np.ndarray
    top_p: np.ndarray
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    ranges: dict[str, np.ndarray] = field(default_factory=dict)
    cams: np.ndarray | None = None
    filters: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        arrays = [self.top, self.top_p, *self.maps.values(), *self.ranges.values(), self.cams, self.filters]
        return sum(a.nbytes for a in arrays if a is not None)

    @property
    def label(self) -> str:
        """"epoch 3", or "epoch 2.50" for a frame taken within an epoch."""
        return f"epoch {self.epoch:g}" if float(self.epoch).is_integer() else f"epoch {self.epoch:.2f}"


class ProbeRecording:
    """The probes and the frames recorded of them, thinned to stay within ``budget`` bytes."""

    def __init__(self, probes: Sequence[Probe], class_names: Sequence[str], budget: int = DEFAULT_BUDGET):
        if not probes:
            raise UserError("Choose at least one probe image.")
        if len(probes) > MAX_PROBES:
            raise UserError(f"At most {MAX_PROBES} probe images can be followed; {len(probes)} were given.")
        self.probes = list(probes)
        self.class_names = list(class_names)
        self.budget = int(budget)
        self.layers: list[str] = []  # the layers whose maps the frames keep, in network order
        self.cam_layer: str | None = None
        self.frames: list[ProbeFrame] = []
        self.numbers: list[int] = []  # each kept frame's number among all frames added (see ``add``)
        self.offered = 0  # frames added so far
        self.stride = 1  # the kept frames' numbers are multiples of it (and the newest)
        self.note = ""  # why recording stopped, when it could not go on
        self.cam_sigma = CAM_SMOOTH_SIGMA  # the heat maps are smoothed as the viewer draws them (see ``ProbeRecorder``)

    def follows(self, probes: Sequence[Probe], class_names: Sequence[str]) -> bool:
        """Whether this recording is of ``probes`` (the same files, true classes and image sizes) for the classes
        ``class_names``, so that a run with them can add to it; else a new recording is needed."""
        def key(ps):
            return [(p.path, p.true_class, p.image.shape) for p in ps]

        return self.class_names == list(class_names) and key(self.probes) == key(probes)

    # -- frames ---------------------------------------------------------------------
    def add(self, frame: ProbeFrame) -> None:
        """Append ``frame`` (frames come in training order), thinning older frames to keep the budget.

        Frames are numbered as they come; the recording keeps those whose number is a multiple
        of ``stride`` (1, then 2, 4, … as the budget demands), and always the newest.
        """
        if self.frames and frame.epoch <= self.frames[-1].epoch:  # a run restarted from an earlier epoch
            keep = [i for i, f in enumerate(self.frames) if f.epoch < frame.epoch]
            self.frames, self.numbers = [self.frames[i] for i in keep], [self.numbers[i] for i in keep]
        if self.numbers and self.numbers[-1] % self.stride:  # the newest was kept only for being the newest
            self.frames.pop()
            self.numbers.pop()
        self.frames.append(frame)
        self.numbers.append(self.offered)
        self.offered += 1
        while self.frames_nbytes() > self.budget and len(self.frames) > 2:
            self.thin()

    def thin(self) -> None:
        """Double the stride: keep every second of the kept frames (the first, third, …) and the newest."""
        self.stride *= 2
        last = len(self.frames) - 1
        keep = [i for i, n in enumerate(self.numbers) if n % self.stride == 0 or i == last]
        self.frames, self.numbers = [self.frames[i] for i in keep], [self.numbers[i] for i in keep]

    def frames_nbytes(self) -> int:
        return sum(f.nbytes for f in self.frames)

    @property
    def nbytes(self) -> int:
        """Memory the recording holds: its frames and its probe images."""
        return self.frames_nbytes() + sum(p.image.nbytes for p in self.probes)

    def epochs(self) -> list[float]:
        return [f.epoch for f in self.frames]

    def copy(self) -> "ProbeRecording":
        """A recording with the same frames list copied (frames themselves are never changed once added)."""
        other = ProbeRecording(self.probes, self.class_names, self.budget)
        other.layers, other.cam_layer, other.note = list(self.layers), self.cam_layer, self.note
        other.cam_sigma = self.cam_sigma
        other.frames, other.numbers = list(self.frames), list(self.numbers)
        other.offered, other.stride = self.offered, self.stride
        return other

    # -- files ----------------------------------------------------------------------
    def save(self, folder: str | os.PathLike) -> Path:
        """Write the recording into ``folder`` (created; each of its two files replaced whole, through ``fsutil``).
        Returns the folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        for i, p in enumerate(self.probes):
            arrays[f"probe{i}"] = p.image
        frames = []
        for i, f in enumerate(self.frames):
            arrays[f"f{i}_top"], arrays[f"f{i}_top_p"] = f.top, f.top_p
            for j, layer in enumerate(self.layers):
                if layer in f.maps:
                    arrays[f"f{i}_map{j}"], arrays[f"f{i}_range{j}"] = f.maps[layer], f.ranges[layer]
            if f.cams is not None:
                arrays[f"f{i}_cams"] = f.cams
            if f.filters is not None:
                arrays[f"f{i}_filters"] = f.filters
            frames.append({"epoch": f.epoch, "number": self.numbers[i]})
        meta = {"format": FORMAT_VERSION, "class_names": self.class_names, "budget": self.budget,
                "offered": self.offered, "stride": self.stride,
                "layers": self.layers, "cam_layer": self.cam_layer, "cam_sigma": self.cam_sigma, "note": self.note,
                "frames": frames,
                "probes": [{"name": p.name, "true_class": p.true_class, "path": p.path} for p in self.probes]}
        with fsutil.open_replacing(folder / ARRAYS_FILE, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        fsutil.write_text(folder / META_FILE, json.dumps(meta, indent=1))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "ProbeRecording":
        """Read a recording ``save`` wrote.

        Raises:
            UserError: the folder holds no recording, or a damaged or newer one.
        """
        folder = Path(folder)
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
            with np.load(folder / ARRAYS_FILE, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as e:
            raise UserError(f"The probe recording in {folder} cannot be read ({e}).") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
            raise UserError(f"The probe recording in {folder} was written by another version of cnndesk.")
        try:
            probes = [Probe(d["name"], arrays[f"probe{i}"], d["true_class"], d["path"])
                      for i, d in enumerate(meta["probes"])]
            rec = cls(probes, meta["class_names"], int(meta["budget"]))
            rec.layers, rec.cam_layer, rec.note = list(meta["layers"]), meta["cam_layer"], meta.get("note", "")
            rec.offered, rec.stride = int(meta["offered"]), int(meta["stride"])
            for i, d in enumerate(meta["frames"]):
                maps = {l: arrays[f"f{i}_map{j}"] for j, l in enumerate(rec.layers) if f"f{i}_map{j}" in arrays}
                ranges = {l: arrays[f"f{i}_range{j}"] for j, l in enumerate(rec.layers) if f"f{i}_range{j}" in arrays}
                rec.frames.append(ProbeFrame(float(d["epoch"]), arrays[f"f{i}_top"], arrays[f"f{i}_top_p"], maps,
                                             ranges, arrays.get(f"f{i}_cams"), arrays.get(f"f{i}_filters")))
                rec.numbers.append(int(d["number"]))
            rec.cam_sigma = float(meta.get("cam_sigma", 0.0))
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"The probe recording in {folder} is damaged ({type(e).__name__}: {e}).") from None
        if rec.cam_sigma == 0:  # recorded before heat maps were smoothed: shown as the viewer shows them all the same
            for f in rec.frames:
                if f.cams is not None:
                    f.cams = np.stack([to_uint8(smooth_map(c / 255.0, CAM_SMOOTH_SIGMA), 0.0, 1.0) for c in f.cams])
            rec.cam_sigma = CAM_SMOOTH_SIGMA
        return rec


# -- making probes ----------------------------------------------------------------------
def load_probes(paths: Sequence[str], preprocessing, class_names: Sequence[str],
                known: dict[str, int] | None = None) -> list[Probe]:
    """Decode probe image files as the model sees them, and find each one's true class.

    The true class is the one ``known`` gives for the file (a dataset image: its label), else the
    class named like the file's folder (``…/cat/x.png`` is a cat), else unknown (the heat map then
    shows the predicted class).

    Raises:
        UserError: more than ``MAX_PROBES`` files, or a file that cannot be read as an image.
    """
    if len(paths) > MAX_PROBES:
        raise UserError(f"At most {MAX_PROBES} probe images can be followed; {len(paths)} were given.")
    names = {os.path.basename(p) for p in paths}  # only files of those names can be probes: resolve only them
    known = {str(Path(k).resolve()): v for k, v in (known or {}).items() if os.path.basename(k) in names}
    probes = []
    for path in paths:
        resolved = str(Path(path).resolve())
        label = known.get(resolved)
        if label is None and Path(path).parent.name in class_names:
            label = list(class_names).index(Path(path).parent.name)
        try:
            image = decode_image(path, preprocessing)
        except UserError as e:
            raise UserError(f"The probe image {path} cannot be used: {e}") from None
        probes.append(Probe(Path(path).name, image, label, str(path)))
    return probes


def known_labels(data) -> dict[str, int]:
    """A loaded dataset's files and their labels, for ``load_probes``."""
    return {str(p): int(y) for p, y in zip(data.paths, data.labels)}


# -- recording ----------------------------------------------------------------------------
def inspector_for(model, class_names, preprocessing):
    """An ``Inspector`` for ``model``; a pooled model keeps its own, whose functions read the new weights."""
    from ..model.inspection import Inspector
    from .model_pool import attachments

    attached = attachments(model)
    inspector = attached.get("inspector")
    if inspector is None or inspector.preprocessing.input_shape != preprocessing.input_shape:
        inspector = Inspector(model, class_names, preprocessing)
        attached["inspector"] = inspector
    else:
        inspector.class_names = list(class_names)
        inspector.preprocessing = preprocessing
    return inspector


def follow_layers(conv_layers: Sequence[str], most: int = MAX_LAYERS) -> list[str]:
    """At most ``most`` of the convolutions, spread evenly from the first to the last."""
    conv_layers = list(conv_layers)
    if len(conv_layers) <= most:
        return conv_layers
    picks = np.linspace(0, len(conv_layers) - 1, most).round().astype(int)
    return [conv_layers[i] for i in sorted(set(picks))]


def shrink(m: np.ndarray, side: int = MAP_SIDE) -> np.ndarray:
    """Average (H, W, …) down by a whole factor per axis so that neither side passes ``side``."""
    h, w = m.shape[:2]
    fy, fx = -(-h // side), -(-w // side)
    if fy == 1 and fx == 1:
        return m
    hh, ww = h // fy * fy, w // fx * fx
    m = m[:hh, :ww]
    return m.reshape(hh // fy, fy, ww // fx, fx, *m.shape[2:]).mean(axis=(1, 3))


def to_uint8(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.clip((values - lo) * scale + 0.5, 0, 255).astype(np.uint8)


def _channels(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One layer's map (H, W, C) -> its first channels (c, h, w) uint8 and each one's (low, high)."""
    m = shrink(np.asarray(m, np.float32)[:, :, :MAX_CHANNELS])
    lo, hi = m.min(axis=(0, 1)), m.max(axis=(0, 1))
    out = np.stack([to_uint8(m[:, :, c], lo[c], hi[c]) for c in range(m.shape[2])])
    return out, np.stack([lo, hi], axis=-1).astype(np.float32)


def _filters(kernels: np.ndarray | None) -> np.ndarray | None:
    if kernels is None:
        return None
    k = np.moveaxis(np.asarray(kernels, np.float32), -1, 0)[:MAX_FILTERS]  # (filters, k, k, in)
    top = float(np.abs(k).max()) or 1.0
    return to_uint8(k, -top, top)


class ProbeRecorder:
    """Records a ``ProbeRecording`` during ``fit``: after every epoch, and every ``every_batches`` batches.

    Used as a Keras callback (``callback()``); ``on_frame`` (if given) is called with each new frame,
    on the training thread. A failure to record (a model the inspector cannot read) ends the recording
    with a ``note`` but never the training.

    Args:
        recording: the recording to add to (a continued run adds to the one it had).
        preprocessing: how the probes were prepared (the model's input).
        layers: the layers to follow; defaults to ``follow_layers`` of the model's convolutions.
        initial_epoch: epochs trained before this run (numbers the frames).
        every_batches: also record every this many batches within an epoch (0: at epoch ends only).
    """

    def __init__(self, recording: ProbeRecording, preprocessing, layers: Sequence[str] | None = None,
                 initial_epoch: int = 0, every_batches: int = 0,
                 on_frame: Callable[[ProbeFrame], None] | None = None):
        self.recording, self.preprocessing = recording, preprocessing
        self.chosen_layers = list(layers) if layers else None
        self.initial_epoch, self.every_batches, self.on_frame = initial_epoch, max(0, int(every_batches)), on_frame
        self.inspector = None
        self.seconds = 0.0  # time spent recording, for the benchmark

    def callback(self):
        import keras

        recorder = self

        class _Callback(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                recorder.start(self.model)

            def on_train_batch_end(self, batch, logs=None):
                steps = (self.params or {}).get("steps") or 0
                every = recorder.every_batches
                if every and (batch + 1) % every == 0 and steps and batch + 1 < steps:
                    recorder.record(recorder.initial_epoch + recorder.epoch + (batch + 1) / steps)

            def on_epoch_begin(self, epoch, logs=None):
                recorder.epoch = epoch

            def on_epoch_end(self, epoch, logs=None):
                recorder.record(float(recorder.initial_epoch + epoch + 1))

        return _Callback()

    def start(self, model) -> None:
        rec = self.recording
        self.epoch = 0
        try:
            self.inspector = inspector_for(model, rec.class_names, self.preprocessing)
        except Exception as e:  # a model the inspector refuses still trains, without a recording
            self._give_up(e)
            return
        ins = self.inspector
        wanted = self.chosen_layers or follow_layers(ins.conv_layer_names or ins.layer_names)
        rec.layers = [l for l in wanted if l in ins.layer_names]
        rec.cam_layer = ins.default_cam_layer
        self._images = [p.image for p in rec.probes]

    def record(self, epoch: float) -> None:
        import time

        if self.inspector is None:
            return
        t0 = time.perf_counter()
        try:
            frame = self.frame(epoch)
        except Exception as e:  # the run goes on; the note says why the recording stopped
            self._give_up(e)
            return
        self.recording.add(frame)
        self.seconds += time.perf_counter() - t0
        if self.on_frame is not None:
            self.on_frame(frame)

    def frame(self, epoch: float) -> ProbeFrame:
        """Ask the model about every probe now."""
        ins, rec = self.inspector, self.recording
        k = min(TOP_K, len(rec.class_names))
        tops, top_ps, cams = [], [], []
        per_layer: dict[str, list] = {l: [] for l in rec.layers}
        for probe, image in zip(rec.probes, self._images):
            maps, probs = ins.activation_maps(image) if ins.has_maps else ([], ins.probabilities(image)[0])
            order = np.argsort(-probs)[:k]
            tops.append(order.astype(np.int16))
            top_ps.append(probs[order].astype(np.float32))
            by_name = dict(maps)
            for layer in rec.layers:
                per_layer[layer].append(_channels(by_name[layer]))
            if rec.cam_layer is not None:
                target = probe.true_class if probe.true_class is not None else int(order[0])
                # smoothed at the layer's own resolution, as the viewer draws it, then shrunk
                cam = smooth_map(ins.gradcam(image, target, rec.cam_layer), rec.cam_sigma)
                cams.append(to_uint8(shrink(cam), 0.0, 1.0))
        return ProbeFrame(
            epoch, np.stack(tops), np.stack(top_ps),
            {l: np.stack([c for c, _ in v]) for l, v in per_layer.items()},
            {l: np.stack([r for _, r in v]) for l, v in per_layer.items()},
            np.stack(cams) if cams else None, _filters(ins.first_layer_kernels()))

    def _give_up(self, error: Exception) -> None:
        self.inspector = None
        self.recording.note = f"Probe recording stopped: {type(error).__name__}: {error}"[:300]


# -- a run's recording --------------------------------------------------------------------
def recording_summary(recording: ProbeRecording) -> dict:
    """What a run keeps of its recording in ``project.json`` (``Run.probes``): enough to list it without
    reading its frames (``cnndesk-cli runs``, the runs list)."""
    return {"frames": len(recording.frames), "images": len(recording.probes),
            "last_epoch": float(recording.frames[-1].epoch) if recording.frames else None, "note": recording.note}
