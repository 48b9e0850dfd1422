"""Look inside a trained model: top-k, activation maps, Grad-CAM, evaluation.

``Inspector`` wraps any flat Sequential/Functional Keras image classifier. It
rebuilds the model's graph on a fresh ``keras.Input`` (a reloaded
Sequential's ``layer.output`` is stale and gives no gradients, see docs/tensorflow-notes.md)
and compiles one ``tf.function`` per question, so a warm call for one image
takes milliseconds (figures in docs/inspection.md). The rebuilt graph, with
its conv/pool outputs tapped, comes from :mod:`.taps`.

Each function takes the model's own input shape with any batch size (its
``input_signature``), so it is traced once: once per model, and for heat maps
once per layer and method, however many images of whatever size come. Each is
a function of its own to TensorFlow too (:func:`_traced_once`), so opening a
sixth model or choosing a sixth layer does not look like retracing one
function and print TensorFlow's warning about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import functools
import time
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from ..data.images import decode_for_viewing, decode_image, Preprocessing, recognise_pixels
from ..errors import ModelFileError, UserError
from ..intervals import interval_json
from .calibration import temper
from .ensemble import member_names
from .taps import trace_taps

#: what ``Inspector.output_note`` says when cnndesk turns a model's outputs into probabilities
OUTPUT_SCORES_NOTE = {
    "softmax": "This model outputs scores; cnndesk shows softmax probabilities.",
    "sigmoid": "This model outputs a score; cnndesk shows sigmoid probabilities for two classes.",
}
#: images read and predicted at a time by :func:`predict_in_chunks` (evaluation, scoring labels; a few MB at the
#: usual sizes)
EVALUATION_CHUNK = 256
#: what to say when a class's heat map is all zero (HiResCAM's often is on backbones such as MobileNetV2)
EMPTY_CAM_NOTE = "No positive evidence for this class at this layer; try an earlier layer or classic Grad-CAM."


@dataclass
class Prediction:
    """What the model says about one image, with the image itself so nobody decodes it again.

    ``image`` is the prepared model input (uint8 (H, W, C), as ``decode_image``
    returns it); ``display`` a picture of the file to show (uint8 RGB, longest
    side at most ``DISPLAY_SIDE``), or None when it was not asked for.
    """

    path: str | None
    top: list[tuple[str, float]]  # (class name, probability), best first
    probabilities: np.ndarray
    image: np.ndarray | None = None
    display: np.ndarray | None = None

    def to_json(self) -> dict:
        return {"path": self.path, "top": [{"class": c, "probability": round(p, 6)} for c, p in self.top]}


@dataclass(frozen=True)
class Inspection:
    """What a model shows inside for one prepared image (the engine's ``inspect`` answer).

    Attributes:
        maps: (layer name, its maps) of every conv/pool layer, in order.
        probabilities: the model's output for the image.
        class_index: the class the heat map is for.
        cam: the heat map; None when it was not asked for (it follows as a ``HeatMap``) or the model has no maps.
        cam_layer: the layer the heat map is (or would be) at; None for a model without maps.
        has_maps: whether the model has conv or pooling layers to look inside.
        pictures: layer name -> the first channels of its maps coloured ((channels, H, W, 3) uint8).
        kernels: the first layer's filters (``Inspector.first_layer_kernels``).
        conv_layers: the convolution layers' names; layers: every layer's.
    """

    maps: list
    probabilities: np.ndarray
    class_index: int
    cam: np.ndarray | None
    cam_layer: str | None
    has_maps: bool
    pictures: dict
    kernels: object
    conv_layers: list[str]
    layers: list[str]


@dataclass(frozen=True)
class HeatMap:
    """A heat map for one prepared image (the engine's ``gradcam`` answer), with what it is of."""

    cam: np.ndarray
    class_index: int
    cam_layer: str
    cam_method: str


@dataclass(frozen=True)
class Seen:
    """What the viewer is told of one image: its prediction, with the prepared model input (``image``) and a picture
    to show (``display``), or why there is none (``error``); ``inspection`` when its maps came from the same pass;
    ``unlike`` whether it is unlike the training images, and ``unlike_reason`` why, in words.

    ``path`` is the file, or the label of an image that came as data (None: it has none).
    """

    path: str | None
    top: tuple = ()
    probabilities: np.ndarray | None = None
    image: np.ndarray | None = None
    display: np.ndarray | None = None
    error: str | None = None
    inspection: Inspection | None = None
    unlike: bool | None = None  # unlike the training images (core.work.novelty); None: the model cannot tell
    unlike_reason: str = ""  # what is unlike them (core.work.novelty.signal_reason); "" when it is not


def predict_in_chunks(predict: Callable[[np.ndarray], np.ndarray], images_uint8, classes: int) -> np.ndarray:
    """``predict`` (uint8 images to (n, classes) probabilities) of an (N, H, W, C) array or anything sliced like
    one (``LoadedDataset.rows``), called on ``EVALUATION_CHUNK`` images at a time: a lazy sequence is never held
    in memory whole, and only a chunk at a time becomes float32."""
    chunks = [predict(images_uint8[i:i + EVALUATION_CHUNK]) for i in range(0, len(images_uint8), EVALUATION_CHUNK)]
    return np.concatenate(chunks) if chunks else np.zeros((0, classes), np.float32)


@dataclass
class ClassMetrics:
    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class Misclassified:
    index: int  # index into the evaluated arrays
    path: str | None
    true_class: str
    predicted_class: str
    confidence: float


@dataclass
class Evaluation:
    accuracy: float
    class_names: list[str]
    per_class: list[ClassMetrics]
    confusion: np.ndarray  # rows: true class, columns: predicted class
    misclassified: list[Misclassified] = field(default_factory=list)
    labels: np.ndarray | None = None
    predicted: np.ndarray | None = None
    confidence: np.ndarray | None = None
    calibration: dict | None = None  # core.model.calibration.calibration_report, with "calibrated" (its T is kept)

    def cell(self, true_index: int, predicted_index: int) -> list[int]:
        """Indices of the evaluated images with this true and predicted class."""
        return np.flatnonzero((self.labels == true_index) & (self.predicted == predicted_index)).tolist()

    @property
    def images(self) -> int:
        """How many images were evaluated (what the accuracy's interval is measured on)."""
        return int(self.confusion.sum())

    def to_json(self) -> dict:
        """The figures, each accuracy with its 95 % interval (``core.intervals``): ``accuracy_interval`` on ``images``
        images, and each class's ``recall_interval`` (its accuracy) on its ``support`` images."""
        return {
            "accuracy": self.accuracy,
            "accuracy_interval": interval_json(self.accuracy, self.images),
            "images": self.images,
            "classes": self.class_names,
            "per_class": [{"class": m.name, "precision": m.precision, "recall": m.recall,
                           "recall_interval": interval_json(m.recall, m.support), "f1": m.f1,
                           "support": m.support} for m in self.per_class],
            "confusion_matrix": self.confusion.tolist(),
            "misclassified": [{"path": m.path, "true": m.true_class, "predicted": m.predicted_class,
                               "confidence": m.confidence} for m in self.misclassified],
        }


def check_model(model) -> None:
    """Refuse, with a message, a model cnndesk cannot classify with or look inside."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelFileError(f"The model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
                             "cnndesk opens image classifiers with one image input and one output.")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[-1] not in (1, 3):  # images are prepared as grayscale or RGB only
        raise ModelFileError(f"The model's input has shape {shape}; cnndesk needs an image input "
                             "(batch, height, width, 1 or 3 channels).")
    out = tuple(model.outputs[0].shape)
    if len(out) != 2 or not out[-1]:
        raise ModelFileError(f"The model's output has shape {out}; cnndesk needs a classifier with one "
                             "probability per class (batch, classes), or one unit for two classes.")


def preprocessing_for_model(model, image_size: tuple[int, int] | None = None) -> Preprocessing:
    """Read input size and colour mode from the model; pick the pixel mode it most likely expects.

    The pixel mode is ``recognise_pixels``' choice: "0-255" for a model with its own
    ``Rescaling`` or ``Normalization`` layer, a keras.applications family's own mode when the
    layer names say which family it is, else 0-1. A caffe or torch family with a grayscale input
    (which those modes cannot serve) gets 0-1.
    """
    _, h, w, c = tuple(model.inputs[0].shape)
    if h is None or w is None:
        h, w = image_size or (224, 224)
    color_mode = "grayscale" if c == 1 else "rgb"
    pixels, _ = recognise_pixels([(l.name, type(l).__name__) for l in model.layers])
    if color_mode != "rgb" and pixels in ("caffe", "torch"):
        pixels = "0-1"
    return Preprocessing((int(h), int(w)), color_mode, pixels)


def activation_name(layer) -> str:
    """"softmax", "sigmoid", "linear", … for a Dense or Activation layer; "softmax" for a Softmax layer."""
    if type(layer).__name__ == "Softmax":
        return "softmax"
    return getattr(getattr(layer, "activation", None), "__name__", "") or ""


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _traced_once(fn, *input_signature):
    """``tf.function(fn)`` for inputs of ``input_signature``, which TensorFlow counts as a function of its own.

    TensorFlow's warning about frequent retracing counts the traces of every ``tf.function`` made from the
    same Python code together: one function per model (a lambda or a method of ``Inspector``) would look like
    one function retraced for every model, and print the warning on the terminal by the fifth model or heat-map
    layer. A ``functools.partial`` is counted by itself, so the warning keeps its meaning: it would still name
    a function that is traced again.
    """
    return tf.function(functools.partial(fn), input_signature=list(input_signature), autograph=False)


def _is_distribution(rows: np.ndarray) -> bool:
    """Whether each row is a probability distribution: no negative value, summing to 1 within 1e-3."""
    return bool(np.all(rows >= 0) and np.all(np.abs(rows.sum(axis=-1) - 1) <= 1e-3))


class Inspector:
    """Predictions, activation maps and Grad-CAM for one model.

    A model without convolution or pooling layers (say Flatten then Dense) is
    accepted: it predicts and evaluates, but has no maps or heat maps to show
    (``has_maps`` is False).

    Probabilities are always a distribution over the classes. A model whose
    last layer gives scores (no softmax, or outputs that are negative or do
    not sum to 1 on the first prediction) is shown through a softmax; one
    output unit is a binary classifier, shown as two classes (1 − p, p), with
    a sigmoid applied when the model has none. ``output_note`` then says so
    in one sentence ("" when the model's outputs are shown as they are).

    Models nested in the model (a pretrained backbone inside a Sequential or
    Functional model) are looked inside: their conv/pool layers are named
    ``backbone/layer``.

    An ensemble (``core.model.ensemble``) predicts with the average of its members; its maps and heat maps
    are those of one member at a time (``members`` names them, ``choose_member`` picks one; the first at first).

    Args:
        model: a Keras image classifier (checked with ``check_model``).
        class_names: names of the outputs; "class 0…N" when None.
        preprocessing: how files are prepared; read from the model when None.
    """

    def __init__(self, model, class_names: Sequence[str] | None = None, preprocessing: Preprocessing | None = None):
        check_model(model)
        self.model = model
        self.units = int(model.outputs[0].shape[-1])
        n = max(self.units, 2)  # one unit: a binary classifier
        self.class_names = list(class_names) if class_names else [f"class {i}" for i in range(n)]
        if len(self.class_names) != n:
            raise ModelFileError(f"The model has {n} outputs but the project names {len(self.class_names)} classes.")
        self.preprocessing = preprocessing or preprocessing_for_model(model)
        expected = tuple(model.inputs[0].shape[1:])
        given = self.preprocessing.input_shape
        if any(e is not None and e != g for e, g in zip(expected, given)):
            raise ModelFileError(
                f"The model takes {'x'.join(str(e) for e in expected)} images but the project prepares "
                f"{'x'.join(str(g) for g in given)} ({self.preprocessing.color_mode}); the project file does not "
                "match its model.")
        self.members: list[str] = member_names(model)  # an ensemble's members ("member_1", …); [] for one model
        self.member = 0  # the member whose maps are shown
        self._input_spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32)
        self._build_taps()
        self.maps_pass_seconds: float | None = None  # how long the last ``activation_maps`` forward pass took
        self.temperature = 1.0  # probabilities are softmax(logits / temperature): ``core.work.trust.Trust.temperature``

    def choose_member(self, index: int) -> None:
        """Show the maps of the ensemble's member ``index`` (from 0); the predictions stay the ensemble's.

        Raises:
            UserError: the model is not an ensemble, or has no such member.
        """
        if not self.members:
            raise UserError("This model is not an ensemble: it has no members to choose from.")
        if not 0 <= int(index) < len(self.members):
            raise UserError(f"The ensemble has {len(self.members)} members; there is no member {int(index) + 1}.")
        if int(index) != self.member:
            self.member = int(index)
            self._build_taps()

    # -- graph -------------------------------------------------------------
    def _build_taps(self) -> None:
        """The tapped graph (of the chosen member, for an ensemble) and the functions traced on it."""
        graph = trace_taps(self.model, self.member)
        taps = graph.taps
        self.layer_names: list[str] = taps.names
        self.conv_layer_names = [n for n, l in zip(taps.names, taps.layers) if "Conv" in type(l).__name__]
        self._tap_layers = taps.layers
        self._tap_sizes = [tuple(t.shape[1:3]) for t in taps.tensors]
        self._read_output_kind(graph.last, graph.penultimate)
        outs = taps.tensors + ([graph.penultimate] if self._score_from is not None else []) + [graph.output]
        self._tapped = keras.Model(graph.inputs, outs, name="cnndesk_taps")
        self._predict_fn = _traced_once(self._predict, self._input_spec)
        self._maps_fn = _traced_once(self._outputs, self._input_spec)
        self._cam_fns: dict[tuple, object] = {}

    def _read_output_kind(self, last, penultimate) -> None:
        """What the last layer's activation says about the outputs, and where Grad-CAM takes class scores.

        Grad-CAM explains the score before a softmax or sigmoid: with a Dense
        layer it is recomputed from the layer's input (``"dense"``); with an
        Activation or Softmax layer it is that layer's input (``"input"``).
        """
        activation = activation_name(last)
        squash = "sigmoid" if self.units == 1 else "softmax"
        self._score_from = None
        if penultimate is not None and activation in ("softmax", "sigmoid"):
            self._score_from = "dense" if isinstance(last, keras.layers.Dense) else "input"
        self._logit_layer = last if self._score_from == "dense" else None
        # softmax over one unit, or sigmoid over several, is read as scores too: the first prediction decides
        given = activation == squash or (self.units > 1 and activation == "sigmoid")
        self._squash: str | None = None if given else squash
        self._checked = not given  # a claimed distribution is still checked on the first prediction
        self.output_note = "" if given else OUTPUT_SCORES_NOTE[squash]

    def _outputs(self, x):
        """The tapped maps, then the model's outputs (inference mode)."""
        outs = self._tapped(x, training=False)
        if self._score_from is not None:
            return list(outs[:-2]) + [outs[-1]]
        return list(outs)

    def _predict(self, x):
        return self._outputs(x)[-1]

    def _as_probabilities(self, raw: np.ndarray) -> np.ndarray:
        """The model's outputs (N, units) as probabilities (N, classes): see the class docstring."""
        if not self._checked:
            self._checked = True
            ok = np.all((raw >= 0) & (raw <= 1)) if self.units == 1 else _is_distribution(raw)
            if not ok:
                self._squash = "sigmoid" if self.units == 1 else "softmax"
                self.output_note = OUTPUT_SCORES_NOTE[self._squash]
        if self._squash == "softmax":
            raw = _softmax(raw)
        elif self._squash == "sigmoid":
            raw = _sigmoid(raw)
        if self.units == 1:
            raw = np.concatenate([1 - raw, raw], axis=-1)
        if self.temperature != 1.0:
            raw = temper(raw, self.temperature)
        return raw.astype(np.float32, copy=False)

    @property
    def has_maps(self) -> bool:
        """Whether the model has convolution or pooling layers, so activation maps and heat maps."""
        return bool(self.layer_names)

    @property
    def default_cam_layer(self) -> str | None:
        """The layer heat maps use unless told otherwise; None without ``has_maps``.

        The last convolution whose map is more than one cell (a 1×1 map, as
        at the end of many backbones, only says "yes" or "no"); without one,
        the last pooling layer of more than one cell; else the last conv/pool layer.
        """
        def wide(i: int) -> bool:
            h, w = self._tap_sizes[i]
            return h is None or w is None or h * w > 1

        conv = set(self.conv_layer_names)
        for group in ([i for i, n in enumerate(self.layer_names) if n in conv], range(len(self.layer_names))):
            chosen = [i for i in group if wide(i)]
            if chosen:
                return self.layer_names[chosen[-1]]
        return self.layer_names[-1] if self.layer_names else None

    # -- preparation -------------------------------------------------------
    def prepare(self, source) -> np.ndarray:
        """A file path, PIL image or array -> the uint8 array the model sees (H, W, C)."""
        return decode_image(source, self.preprocessing)

    def _model_input(self, images_uint8: np.ndarray) -> tf.Tensor:
        x = np.asarray(images_uint8, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        return tf.convert_to_tensor(np.asarray(self.preprocessing.pixel_values(x), np.float32))

    # -- questions -----------------------------------------------------------
    def probabilities(self, images_uint8: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Class probabilities for a batch of prepared images (N, H, W, C)."""
        images_uint8 = np.asarray(images_uint8)
        if images_uint8.ndim == 3:
            images_uint8 = images_uint8[None]
        out = [self._as_probabilities(self._predict_fn(self._model_input(images_uint8[i:i + batch_size])).numpy())
               for i in range(0, len(images_uint8), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)

    def chunked_probabilities(self, images_uint8) -> np.ndarray:
        """:meth:`probabilities` of an (N, H, W, C) array or anything sliced like one (``LoadedDataset.rows``),
        read a chunk at a time (:func:`predict_in_chunks`)."""
        return predict_in_chunks(self.probabilities, images_uint8, len(self.class_names))

    def top_k(self, probabilities: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
        order = np.argsort(-probabilities)[: max(1, min(k, len(self.class_names)))]
        return [(self.class_names[i], float(probabilities[i])) for i in order]

    def predict_files(self, paths: Sequence[str], k: int = 5,
                      display: bool = True) -> list[Prediction | tuple[str, str]]:
        """Top-k for each file; an unreadable file gives (path, reason) instead.

        Each file is decoded once: the prediction carries the prepared input
        (``image``) and, when ``display``, a picture to show (``display``).
        Without ``display`` (say for thousands of files) no picture is made.
        """
        results: list = []
        good, arrays, pictures = [], [], []
        for p in paths:
            try:
                if display:
                    picture, prepared = decode_for_viewing(p, self.preprocessing)
                else:
                    picture, prepared = None, self.prepare(p)
            except UserError as e:
                results.append((str(p), str(e)))
                continue
            good.append(len(results))
            results.append(None)
            arrays.append(prepared)
            pictures.append(picture)
        if arrays:
            probs = self.probabilities(np.stack(arrays))
            for slot, pr, prepared, picture in zip(good, probs, arrays, pictures):
                results[slot] = Prediction(str(paths[slot]), self.top_k(pr, k), pr, prepared, picture)
        return results

    def activation_maps(self, image_uint8: np.ndarray, on_probabilities: Callable[[np.ndarray], None] | None = None
                        ) -> tuple[list[tuple[str, np.ndarray]], np.ndarray]:
        """The maps of every conv/pool layer for one prepared image, and its probabilities.

        ``on_probabilities`` is called with the probabilities as soon as the forward pass has run, before the
        maps are copied out (a viewer shows the prediction while the rest is prepared).

        Returns:
            [(layer name, array (H, W, channels)), …] in network order (empty without
            ``has_maps``), and the probabilities.
        """
        start = time.perf_counter()
        outs = self._maps_fn(self._model_input(image_uint8))
        probs = self._as_probabilities(outs[-1].numpy())[0]
        self.maps_pass_seconds = time.perf_counter() - start
        if on_probabilities is not None:
            on_probabilities(probs)
        maps = [(n, o.numpy()[0]) for n, o in zip(self.layer_names, outs[:-1])]
        return maps, probs

    def gradcam(self, image_uint8: np.ndarray, class_index: int, layer_name: str | None = None,
                method: str = "hirescam") -> np.ndarray:
        """Class activation heat map (layer's H, W), in [0, 1], for ``class_index``.

        Args:
            layer_name: a name from ``layer_names``. Defaults to the last conv layer.
            method: "hirescam" (default): the gradient of the class score times
                the activation, summed over channels (HiResCAM); it is exact for
                Flatten+Dense heads such as the seed model's, and equals Grad-CAM
                after global average pooling. "gradcam": classic Grad-CAM (channel
                weights = mean gradient), which on Flatten+Dense heads often comes
                out empty or misplaced. Both are described in docs/inspection.md.

        The class score is the one before the softmax or sigmoid when the last
        layer applies one (for one output unit, class 0's score is minus class
        1's). Regions that lower the score are cut to 0.

        Raises:
            UserError: an unknown method, layer or class, or a model without ``has_maps``.
        """
        if method not in ("hirescam", "gradcam"):
            raise UserError(f"Unknown heat-map method {method!r}; use 'hirescam' or 'gradcam'.")
        if not self.has_maps:
            raise UserError("This model has no convolution or pooling layer, so there is no heat map.")
        layer_name = layer_name or self.default_cam_layer
        if layer_name not in self.layer_names:
            raise UserError(f"No conv/pool layer named {layer_name!r}; choose from {', '.join(self.layer_names)}.")
        if not 0 <= int(class_index) < len(self.class_names):
            raise UserError(f"Class index {class_index} is out of range (the model has {len(self.class_names)} classes).")
        li = self.layer_names.index(layer_name)
        key = (li, method)
        fn = self._cam_fns.get(key)
        if fn is None:
            fn = _traced_once(functools.partial(self._gradcam, li=li, hires=method == "hirescam"), self._input_spec,
                              tf.TensorSpec((), tf.int32))
            self._cam_fns[key] = fn
        return fn(self._model_input(image_uint8), tf.constant(int(class_index))).numpy()

    def _gradcam(self, x, class_index, li, hires: bool):
        with tf.GradientTape() as tape:
            outs = self._tapped(x, training=False)
            fmap = outs[li]
            if self._logit_layer is not None:
                layer = self._logit_layer
                score_all = tf.matmul(outs[-2], layer.kernel)
                if layer.use_bias:
                    score_all = score_all + layer.bias
            elif self._score_from == "input":
                score_all = outs[-2]
            else:
                score_all = outs[-1]
            if self.units == 1:  # one unit scores class 1; class 0 is its opposite
                score_all = tf.concat([-score_all, score_all], axis=-1)
            score = tf.gather(score_all, class_index, axis=-1)
        grads = tape.gradient(score, fmap)
        weights = grads if hires else tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * fmap, axis=-1))[0]
        top = tf.reduce_max(cam)
        return tf.where(top > 0, cam / top, tf.zeros_like(cam))

    def first_layer_kernels(self) -> np.ndarray | None:
        """The first conv layer's kernels (k, k, in_channels, filters), or None."""
        for layer in self._tap_layers:
            if isinstance(layer, keras.layers.Conv2D):
                return np.asarray(layer.kernel)
        return None

    def warm_up(self) -> None:
        """Trace the compiled functions once, so the first image answers in milliseconds.

        Tracing takes a few tenths of a second (figures in docs/inspection.md).
        """
        dummy = np.zeros(self.preprocessing.input_shape, np.uint8)
        self.activation_maps(dummy)
        self.probabilities(dummy)

    # -- evaluation --------------------------------------------------------
    def evaluate(self, images_uint8: np.ndarray, labels: np.ndarray,
                 paths: Sequence[str] | None = None) -> Evaluation:
        """Accuracy, per-class precision/recall/F1, confusion matrix, misclassified images.

        ``images_uint8`` is an (N, H, W, C) array or anything sliced like one
        (``LoadedDataset.rows``): it is read ``EVALUATION_CHUNK`` images at a
        time, so a lazy sequence is never held in memory whole.
        """
        k = len(self.class_names)
        probs = self.chunked_probabilities(images_uint8)
        pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, int)
        conf = probs.max(axis=1) if len(probs) else np.zeros(0)
        labels = np.asarray(labels)
        cm = np.zeros((k, k), dtype=np.int64)
        np.add.at(cm, (labels, pred), 1)
        per_class = []
        for i, name in enumerate(self.class_names):
            tp = cm[i, i]
            precision = tp / cm[:, i].sum() if cm[:, i].sum() else 0.0
            recall = tp / cm[i, :].sum() if cm[i, :].sum() else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            per_class.append(ClassMetrics(name, float(precision), float(recall), float(f1), int(cm[i, :].sum())))
        wrong = np.flatnonzero(pred != labels)
        mis = [Misclassified(int(i), None if paths is None else str(paths[i]), self.class_names[labels[i]],
                             self.class_names[pred[i]], float(conf[i])) for i in wrong]
        mis.sort(key=lambda m: -m.confidence)
        return Evaluation(float((pred == labels).mean()) if len(labels) else 0.0, list(self.class_names),
                          per_class, cm, mis, labels, pred, conf)

