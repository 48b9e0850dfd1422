"""Layer stacks as plain JSON-able data, presets, the shape table, and ``build_model``.

The shape/parameter table is computed here in pure Python (no TensorFlow), so
the model panel can update it on every keystroke; a test checks it against
Keras' own ``count_params`` and output shapes.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ArchitectureError, UserError
from .backbones import FAMILIES, MIN_SIZE, STRIDE, build_backbone, chosen_weights_problem, family, set_fine_tune

#: the final Dense layer's ``units`` value meaning "as many as there are classes"
CLASSES = "classes"

ACTIVATIONS = ("relu", "linear", "sigmoid", "tanh", "elu", "gelu", "swish", "softmax")
OPTIMIZERS = ("adam", "sgd", "rmsprop", "adamw", "nadam")
#: layer kinds that compute in float32 under any dtype policy: the model's head (pooling or flattening the last
#: maps into one vector, dropout, the dense layers and the softmax), cheap beside the convolutions
FLOAT32_KINDS = ("GlobalAveragePooling2D", "Flatten", "Dropout", "Dense")
#: how much of its moving mean and variance a BatchNormalization layer keeps at each training step (PyTorch's
#: default; Keras's, 0.99, weighs the statistics of a random start still by a half after 70 steps and a quarter
#: after 140, so on a small folder's few hundred steps the validation pass and every prediction normalised with
#: figures far from the batches': a deeper model stayed at chance on held-out images while it learned its training
#: images, docs/training-speed.md)
BATCH_NORM_MOMENTUM = 0.9
#: the training precisions a run may be given: "auto" picks per CPU (``core.training.precision``)
PRECISIONS = ("auto", "float32", "bfloat16")

#: the parameters of each layer kind, with their defaults; the editor shows these
LAYER_KINDS: dict[str, dict[str, Any]] = {
    "Conv2D": {"filters": 16, "kernel_size": 3, "strides": 1, "padding": "valid", "activation": "relu"},
    "MaxPool2D": {"pool_size": 2, "strides": 0, "padding": "valid"},
    "AveragePooling2D": {"pool_size": 2, "strides": 0, "padding": "valid"},
    "BatchNormalization": {},
    "Dropout": {"rate": 0.25},
    "Flatten": {},
    "GlobalAveragePooling2D": {},
    "Dense": {"units": 64, "activation": "relu"},
    # a pretrained keras.applications network (see backbones.py); only ever the first layer
    "Backbone": {"family": "MobileNetV3Small", "weights": "imagenet", "fine_tune": 0},
}

#: a sentence per layer kind, for learners
EXPLANATIONS: dict[str, str] = {
    "Conv2D": ("A convolution slides small filters (kernels) over the image. Each filter learns to "
               "respond to one pattern - an edge, a colour blob, later a texture or part - and makes one "
               "output channel, a map of where that pattern is. ReLU then keeps the positive responses "
               "and zeroes the rest."),
    "MaxPool2D": ("Max pooling shrinks each channel by keeping the largest value in every small window "
                  "(2x2 by default): the network keeps 'the pattern is here somewhere' and becomes cheaper "
                  "and less sensitive to exact position."),
    "AveragePooling2D": "Average pooling shrinks each channel by averaging every small window.",
    "BatchNormalization": ("Batch normalisation rescales each channel to a steady range during training, "
                           "which makes training faster and less sensitive to the learning rate."),
    "Dropout": ("Dropout switches off a random share of values during training only, so the network cannot "
                "rely on any single feature; it fights overfitting."),
    "Flatten": "Flatten lays the 3-D stack of feature maps out as one long vector so Dense layers can read it.",
    "GlobalAveragePooling2D": ("Global average pooling turns each channel into one number, its mean: a "
                               "compact summary with no weights, often used instead of Flatten."),
    "Dense": ("A dense (fully connected) layer connects every input to every output. The last one has one "
              "output per class; softmax turns its outputs into probabilities that sum to 1."),
    "Backbone": ("A pretrained backbone is a whole network trained on the 1.4 million photos of ImageNet, without "
                 "its classifier. Its layers already find edges, textures and object parts, so the small head "
                 "after it learns your classes from a few dozen photos. It stays frozen while the head trains; "
                 "'fine tune' then also trains its top blocks at a tenth of the learning rate."),
}


@dataclass
class LayerSpec:
    """One layer of the stack.

    Args:
        kind: a key of ``LAYER_KINDS``.
        params: that kind's parameters; missing ones take the defaults.
    """

    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def full_params(self) -> dict[str, Any]:
        p = dict(LAYER_KINDS.get(self.kind, {}))
        p.update(self.params)
        return p

    def to_json(self) -> dict:
        return {"kind": self.kind, "params": dict(self.params)}

    @classmethod
    def from_json(cls, d: dict) -> "LayerSpec":
        return cls(str(d["kind"]), dict(d.get("params", {})))

    def describe(self) -> str:
        p = self.full_params()
        if self.kind == "Conv2D":
            return f"Conv2D({p['filters']}, {p['kernel_size']}, {p['activation']})"
        if self.kind in ("MaxPool2D", "AveragePooling2D"):
            return f"{self.kind}({p['pool_size']})"
        if self.kind == "Dropout":
            return f"Dropout({p['rate']})"
        if self.kind == "Dense":
            return f"Dense({p['units']}, {p['activation']})"
        if self.kind == "Backbone":
            tuned = f"fine-tune top {p['fine_tune']} blocks" if p["fine_tune"] else "frozen"
            source = {"imagenet": "ImageNet", "none": "random weights"}.get(p["weights"], "weights file")
            return f"{p['family']} ({source}, {tuned})"
        return self.kind


#: the fewest optimizer steps a new model takes by default: 10 epochs of a folder of a few dozen
#: images per class are 40 steps, too few for a model from random weights to leave its random start,
#: so which start it got decided the result (docs/small-folders.md)
MIN_STEPS = 300


@dataclass
class TrainingSettings:
    """Settings of ``fit``.

    Args:
        optimizer: a name from ``OPTIMIZERS``. Defaults to "adam".
        learning_rate: Defaults to 1e-3.
        loss: Defaults to categorical cross-entropy.
        batch_size: images per device in each step; several devices (mirrored) make a global
            batch of this times their number. Defaults to 32.
        epochs: Defaults to 10.
        patience: early stopping ends the run when neither validation accuracy nor validation
            loss improved for this many epochs (at least a quarter of the run); 0 turns it
            off. Defaults to 3.
        restore_best: keep the weights of the epoch with the best validation accuracy (ties:
            the lower validation loss). Defaults to True.
        min_epochs: epochs before early stopping may end a run; None means half the run.
            Defaults to None.
        min_val_images: early stopping is off with fewer validation images than this
            (too few to tell an improvement from noise). Defaults to 50.
        device: "cpu", "gpu:N", "gpu:0,1" or "gpu:all" (several GPUs, mirrored). Defaults to "cpu".
        seed: seeds weights, shuffles and augmentation. Defaults to 1337.
        min_steps: a new model takes at least this many optimizer steps: when ``epochs`` epochs of a
            small training set make fewer, the run has as many more epochs as it takes
            (``planned_epochs``); 0 turns this off. Defaults to ``MIN_STEPS``.
        precision: "auto" (bfloat16 mixed precision on a CPU that computes bfloat16 natively, float32
            elsewhere), "float32" or "bfloat16" (``core.training.precision``). Like the device, a choice
            of the machine, not of the model: the model a run returns is float32 either way. Defaults to "auto".
    """

    optimizer: str = "adam"
    learning_rate: float = 1e-3
    loss: str = "categorical_crossentropy"
    batch_size: int = 32
    epochs: int = 10
    patience: int = 3
    restore_best: bool = True
    min_epochs: int | None = None
    min_val_images: int = 50
    device: str = "cpu"
    seed: int = 1337
    min_steps: int = field(default_factory=lambda: MIN_STEPS)  # MIN_STEPS as it is when the settings are made
    precision: str = "auto"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "TrainingSettings":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"Unknown optimizer {self.optimizer!r}; choose from {', '.join(OPTIMIZERS)}.")
        if not (0 < self.learning_rate < 10):
            raise UserError(f"The learning rate must be a positive number below 10 (got {self.learning_rate}).")
        if self.batch_size < 1:
            raise UserError("The batch size must be at least 1.")
        if self.epochs < 1:
            raise UserError("Train for at least 1 epoch.")
        if self.patience < 0:
            raise UserError("Early-stopping patience cannot be negative.")
        if self.min_epochs is not None and self.min_epochs < 0:
            raise UserError("The minimum number of epochs before early stopping cannot be negative.")
        if self.min_val_images < 0:
            raise UserError("The smallest validation set for early stopping cannot be negative.")
        if self.precision not in PRECISIONS:
            raise UserError(f"Unknown precision {self.precision!r}; choose from {', '.join(PRECISIONS)}.")
        if self.min_steps < 0:
            raise UserError("The minimum number of training steps cannot be negative.")


def planned_epochs(settings: TrainingSettings, steps_per_epoch: int) -> int:
    """The epochs a new model trains for: ``settings.epochs``, or more when they make fewer than
    ``settings.min_steps`` optimizer steps of ``steps_per_epoch`` each (docs/small-folders.md)."""
    if settings.min_steps <= 0:
        return settings.epochs
    return max(settings.epochs, math.ceil(settings.min_steps / max(1, steps_per_epoch)))


# ---------------------------------------------------------------------------
# presets

def _conv(filters, k=3, act="relu", padding="valid"):
    return LayerSpec("Conv2D", {"filters": filters, "kernel_size": k, "activation": act, "padding": padding})


def _out():
    return LayerSpec("Dense", {"units": CLASSES, "activation": "softmax"})


PRESETS: dict[str, tuple[str, list[LayerSpec]]] = {
    "seed": ("Seed - the classic small Keras CNN: Conv2D(10,3) x2, MaxPool, Conv2D(10,3) x2, MaxPool, Flatten, Dense",
             [_conv(10), _conv(10), LayerSpec("MaxPool2D", {"pool_size": 2}),
              _conv(10), _conv(10), LayerSpec("MaxPool2D", {"pool_size": 2}),
              LayerSpec("Flatten"), _out()]),
    "tinyvgg": ("TinyVGG - the CNN Explainer network, two blocks of 'same' convolutions",
                [_conv(10, padding="same"), _conv(10, padding="same"), LayerSpec("MaxPool2D", {"pool_size": 2}),
                 _conv(10, padding="same"), _conv(10, padding="same"), LayerSpec("MaxPool2D", {"pool_size": 2}),
                 LayerSpec("Flatten"), _out()]),
    "deeper": ("Deeper - three conv blocks with BatchNorm and Dropout, global average pooling",
               [_conv(32, padding="same"), LayerSpec("BatchNormalization"), LayerSpec("MaxPool2D", {"pool_size": 2}),
                _conv(64, padding="same"), LayerSpec("BatchNormalization"), LayerSpec("MaxPool2D", {"pool_size": 2}),
                _conv(128, padding="same"), LayerSpec("BatchNormalization"), LayerSpec("MaxPool2D", {"pool_size": 2}),
                LayerSpec("Dropout", {"rate": 0.3}), LayerSpec("GlobalAveragePooling2D"),
                LayerSpec("Dense", {"units": 64, "activation": "relu"}), LayerSpec("Dropout", {"rate": 0.3}), _out()]),
}


def _pretrained(family: str, dropout: float) -> list[LayerSpec]:
    return [LayerSpec("Backbone", {"family": family, "weights": "imagenet", "fine_tune": 0}),
            LayerSpec("GlobalAveragePooling2D"), LayerSpec("Dropout", {"rate": dropout}), _out()]


PRESETS.update({
    "mobilenetv3small": ("MobileNetV3Small (pretrained) - ImageNet MobileNetV3Small, global average pooling, "
                         "Dropout, Dense", _pretrained("MobileNetV3Small", 0.2)),
    "efficientnetb0": ("EfficientNetB0 (pretrained) - ImageNet EfficientNetB0, global average pooling, Dropout, Dense",
                       _pretrained("EfficientNetB0", 0.2)),
    "mobilenetv2": ("MobileNetV2 (pretrained) - ImageNet MobileNetV2, global average pooling, Dropout, Dense",
                    _pretrained("MobileNetV2", 0.2)),
})


#: what each preset is good for, one sentence a learner can choose by
PRESET_USES: dict[str, str] = {
    "seed": "A quick first model for simple shapes and colours; the baseline to beat.",
    "tinyvgg": ("Keeps the image size inside each block, so its activation maps are easy to read: "
                "a good model to look inside."),
    "deeper": ("More capacity for harder pictures (textures, many classes, larger images); BatchNorm and "
               "Dropout keep it steady, but it does several times the work."),
    "mobilenetv3small": ("Real photos from a few dozen per class: a small network pretrained on ImageNet (4.3 MB "
                         "download); the fastest pretrained choice."),
    "efficientnetb0": ("Real photos when accuracy matters most: pretrained on ImageNet (16.7 MB download), "
                       "several times slower than MobileNetV3Small."),
    "mobilenetv2": ("Real photos, the classic transfer-learning backbone of the Keras guide (9.4 MB download); "
                    "between the two others in speed."),
}


def has_backbone(layers: list[LayerSpec]) -> bool:
    """Whether the stack starts with a pretrained backbone."""
    return bool(layers) and layers[0].kind == "Backbone"


def run_epochs(settings: TrainingSettings, layers: list[LayerSpec]) -> int:
    """How many epochs a run of this stack has: twice ``settings.epochs`` when its backbone is fine-tuned."""
    tuned = has_backbone(layers) and int(layers[0].full_params()["fine_tune"]) > 0
    return settings.epochs * (2 if tuned else 1)


def default_image_size(layers: list[LayerSpec]) -> int | None:
    """The image side a stack's backbone was trained at (224), or None for a stack without one."""
    return family(layers[0].full_params()["family"]).default_size if has_backbone(layers) else None


@dataclass
class PresetSummary:
    """A preset at a glance, for the current input.

    Attributes:
        name: the key in ``PRESETS``.
        title: its short display name ("Seed").
        layers: its layers in words, from its description.
        use: what it is good for.
        params: its parameter count for the input; None when it does not fit the input.
        multiply_adds: the multiply-adds one image costs (see ``multiply_adds``); None when it does not fit.
        problem: why it does not fit the input; None when it does.
    """

    name: str
    title: str
    layers: str
    use: str
    params: int | None
    multiply_adds: int | None
    problem: str | None = None


def preset_summary(name: str, input_shape: tuple[int, int, int], num_classes: int) -> PresetSummary:
    """What the named preset is, is good for, and costs for this input."""
    description, stack = PRESETS[name]
    title, _, layers = description.partition(" - ")
    try:
        rows = layer_table(stack, input_shape, num_classes)
    except ArchitectureError as e:
        return PresetSummary(name, title, layers, PRESET_USES.get(name, ""), None, None, str(e))
    return PresetSummary(name, title, layers, PRESET_USES.get(name, ""), total_params(rows), multiply_adds(rows))


def preset(name: str) -> list[LayerSpec]:
    """A fresh copy of the named preset's layer stack."""
    if name not in PRESETS:
        raise UserError(f"Unknown preset {name!r}; choose from {', '.join(PRESETS)}.")
    return copy.deepcopy(PRESETS[name][1])


# ---------------------------------------------------------------------------
# shape table

@dataclass
class LayerRow:
    index: int  # index in the stack; -1 for the input/rescaling rows
    name: str
    kind: str
    output_shape: tuple
    params: int


def layer_name(index: int, spec: LayerSpec) -> str:
    """The Keras name of the stack's ``index``-th layer (stable, so taps are stable)."""
    return f"{spec.kind.lower()}_{index + 1}"


def _int_param(spec: LayerSpec, index: int, key: str, minimum: int) -> int:
    v = spec.full_params()[key]
    try:
        iv = int(v)
    except (TypeError, ValueError):
        raise ArchitectureError(f"Layer {index + 1} ({spec.kind}): {key} must be a whole number, not {v!r}.", index)
    if iv != v or iv < minimum:
        raise ArchitectureError(f"Layer {index + 1} ({spec.kind}): {key} must be a whole number ≥ {minimum}, not {v!r}.", index)
    return iv


def _conv_out(size: int, k: int, s: int, padding: str) -> int:
    if padding == "same":
        return math.ceil(size / s)
    return (size - k) // s + 1 if size >= k else 0


def _window_out(shape: tuple, k: int, s: int, padding: str, where: str, index: int, what: str,
                hint: str) -> tuple[int, int]:
    """Output height and width of a sliding window (convolution or pooling), or a refusal."""
    if padding not in ("valid", "same"):
        raise ArchitectureError(f"{where}: padding must be 'valid' or 'same'.", index)
    oh, ow = _conv_out(shape[0], k, s, padding), _conv_out(shape[1], k, s, padding)
    if oh < 1 or ow < 1:
        raise ArchitectureError(f"{where}: {what} does not fit the {shape[0]}x{shape[1]} input; the output would be "
                                f"smaller than 1 pixel. {hint}", index)
    return oh, ow


def layer_table(layers: list[LayerSpec], input_shape: tuple[int, int, int], num_classes: int) -> list[LayerRow]:
    """Output shape and parameter count of every layer, without building it.

    The first row is the input with its rescaling. Raises ``ArchitectureError``
    naming the first layer that cannot be built (size below 1, a Dense or
    pooling layer on a tensor of the wrong rank, an unknown kind or a bad
    parameter, a chosen weights file that holds no weights for the backbone); its
    ``rows`` holds the rows of the layers before it, so an editor can still show
    their shapes.
    """
    rows: list[LayerRow] = []
    try:
        return _layer_table(layers, input_shape, num_classes, rows)
    except ArchitectureError as e:
        e.rows = rows
        raise


def _layer_table(layers: list[LayerSpec], input_shape: tuple[int, int, int], num_classes: int,
                 rows: list[LayerRow]) -> list[LayerRow]:
    h, w, c = input_shape
    if min(h, w) < 1 or c not in (1, 3, 4):
        raise ArchitectureError(f"The input shape {input_shape} is not an image shape.", None)
    if num_classes < 2:
        raise ArchitectureError("A classifier needs at least 2 classes.", None)
    shape: tuple = (h, w, c)
    rows.append(LayerRow(-1, "rescaling", "Rescaling", shape, 0))
    if not layers:
        raise ArchitectureError("The model has no layers. Add at least a Flatten and a Dense layer.", None)
    for i, spec in enumerate(layers):
        name = layer_name(i, spec)
        p = spec.full_params()
        where = f"Layer {i + 1} ({spec.kind})"
        params = 0
        if spec.kind not in LAYER_KINDS:
            raise ArchitectureError(f"{where}: unknown layer type.", i)
        if spec.kind in ("Conv2D", "MaxPool2D", "AveragePooling2D", "GlobalAveragePooling2D") and len(shape) != 3:
            raise ArchitectureError(f"{where} needs an image-shaped (3-D) input, but gets a flat vector of {shape[0]}. "
                                    "Move it before Flatten/GlobalAveragePooling.", i)
        if spec.kind == "Conv2D":
            f = _int_param(spec, i, "filters", 1)
            k = _int_param(spec, i, "kernel_size", 1)
            s = _int_param(spec, i, "strides", 1)
            if p["activation"] not in ACTIVATIONS:
                raise ArchitectureError(f"{where}: unknown activation {p['activation']!r}.", i)
            oh, ow = _window_out(shape, k, s, p["padding"], where, i, f"its {k}x{k} kernel",
                                 "Use a larger image size, fewer pooling layers, a smaller kernel or 'same' padding.")
            params = k * k * shape[2] * f + f
            shape = (oh, ow, f)
        elif spec.kind in ("MaxPool2D", "AveragePooling2D"):
            k = _int_param(spec, i, "pool_size", 1)
            s = _int_param(spec, i, "strides", 0) or k
            oh, ow = _window_out(shape, k, s, p["padding"], where, i, f"a {k}x{k} pool",
                                 "Use a larger image size or remove a pooling layer.")
            shape = (oh, ow, shape[2])
        elif spec.kind == "BatchNormalization":
            params = 4 * shape[-1]
        elif spec.kind == "Dropout":
            r = p["rate"]
            if not isinstance(r, (int, float)) or not 0 <= r < 1:
                raise ArchitectureError(f"{where}: rate must be at least 0 and below 1, not {r!r}.", i)
        elif spec.kind == "Flatten":
            shape = (math.prod(shape),)
        elif spec.kind == "GlobalAveragePooling2D":
            shape = (shape[2],)
        elif spec.kind == "Backbone":
            shape, params = _backbone_row(spec, i, shape, where)
        elif spec.kind == "Dense":
            if len(shape) != 1:
                raise ArchitectureError(
                    f"{where} gets a {len(shape)}-D input {shape}; add Flatten or GlobalAveragePooling2D before it.", i)
            units = num_classes if p["units"] == CLASSES else _int_param(spec, i, "units", 1)
            if p["activation"] not in ACTIVATIONS:
                raise ArchitectureError(f"{where}: unknown activation {p['activation']!r}.", i)
            params = shape[0] * units + units
            shape = (units,)
        rows.append(LayerRow(i, name, spec.kind, shape, params))
    last = layers[-1]
    if last.kind != "Dense" or len(shape) != 1 or shape[0] != num_classes or last.full_params()["activation"] != "softmax":
        raise ArchitectureError(
            f"Layer {len(layers)} ({last.kind}): the last layer must be Dense with one unit per class "
            f"({num_classes}) and softmax activation.", len(layers) - 1)
    return rows


def _backbone_row(spec: LayerSpec, index: int, shape: tuple, where: str) -> tuple[tuple, int]:
    """Output shape and parameter count of a pretrained backbone, or a refusal saying what to change."""
    p = spec.full_params()
    if index != 0:
        raise ArchitectureError(f"{where}: a pretrained backbone must be the first layer.", index)
    fam = FAMILIES.get(p["family"])
    if fam is None:
        raise ArchitectureError(f"{where}: unknown backbone {p['family']!r}; choose from {', '.join(FAMILIES)}.",
                                index)
    if shape[2] != 3:
        raise ArchitectureError(f"{where}: {fam.name} was trained on colour photos; set the colour mode to RGB.",
                                index)
    if min(shape[:2]) < MIN_SIZE:
        raise ArchitectureError(f"{where}: {fam.name} needs images of at least {MIN_SIZE}x{MIN_SIZE} pixels "
                                f"(trained at {fam.default_size}); use a larger image size.", index)
    n = _int_param(spec, index, "fine_tune", 0)
    if n > len(fam.blocks):
        raise ArchitectureError(f"{where}: {fam.name} has {len(fam.blocks)} blocks; fine-tune at most that many.",
                                index)
    problem = chosen_weights_problem(p)
    if problem:
        raise ArchitectureError(f"{where}: {problem}", index)
    return (math.ceil(shape[0] / STRIDE), math.ceil(shape[1] / STRIDE), fam.channels), fam.params


def total_params(rows: list[LayerRow]) -> int:
    return sum(r.params for r in rows)


def multiply_adds(rows: list[LayerRow]) -> int:
    """Multiply-adds one image costs in the forward pass, from a ``layer_table``.

    Only the weighted layers count (each weight of a convolution once per output
    position, each Dense weight once): they do nearly all the work, so the ratio
    of two stacks' counts is a fair, hardware-free guess at their relative speed.
    """
    total = 0
    for r in rows:
        if r.kind == "Conv2D":
            h, w, filters = r.output_shape
            total += (r.params - filters) * h * w  # the weights, without the biases
        elif r.kind == "Dense":
            total += r.params - r.output_shape[0]
        elif r.kind == "Backbone":  # the published figure, scaled by the image area (its output grows with it)
            fam = next(f for f in FAMILIES.values() if f.params == r.params and f.channels == r.output_shape[2])
            total += round(fam.macs_224 * r.output_shape[0] * r.output_shape[1] * STRIDE**2 / 224**2)
    return total


# ---------------------------------------------------------------------------
# Keras

def build_model(layers: list[LayerSpec], input_shape: tuple[int, int, int], num_classes: int,
                scale_inside: bool = True):
    """Build the Keras Sequential for the stack (after checking it with ``layer_table``).

    Pixel scaling (``Rescaling(1/255)``) is the first layer, so the model
    takes 0-255 pixels and its exports need no separate preprocessing.
    The layers compute in Keras's global dtype policy, except the head
    (``FLOAT32_KINDS``: global pooling and dense layers), which is float32
    always: under a mixed policy the softmax and the loss stay float32
    (``core.training.precision``).
    """
    import keras

    layer_table(layers, input_shape, num_classes)
    model_layers = [keras.Input(shape=input_shape, name="image")]
    if has_backbone(layers):
        scale_inside = False  # the backbone brings its own preprocessing
        model_layers.extend(_backbone_layers(layers[0], input_shape))
    if scale_inside:
        model_layers.append(keras.layers.Rescaling(1.0 / 255, name="rescaling"))
    for i, spec in enumerate(layers):
        p = spec.full_params()
        name = layer_name(i, spec)
        if spec.kind == "Conv2D":
            layer = keras.layers.Conv2D(int(p["filters"]), int(p["kernel_size"]), strides=int(p["strides"]),
                                        padding=p["padding"], activation=p["activation"], name=name)
        elif spec.kind == "MaxPool2D":
            layer = keras.layers.MaxPooling2D(int(p["pool_size"]), strides=int(p["strides"]) or None,
                                              padding=p["padding"], name=name)
        elif spec.kind == "AveragePooling2D":
            layer = keras.layers.AveragePooling2D(int(p["pool_size"]), strides=int(p["strides"]) or None,
                                                  padding=p["padding"], name=name)
        elif spec.kind == "BatchNormalization":
            layer = keras.layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, name=name)
        elif spec.kind == "Dropout":
            layer = keras.layers.Dropout(float(p["rate"]), name=name, dtype="float32")
        elif spec.kind == "Flatten":
            layer = keras.layers.Flatten(name=name, dtype="float32")
        elif spec.kind == "GlobalAveragePooling2D":
            layer = keras.layers.GlobalAveragePooling2D(name=name, dtype="float32")
        elif spec.kind == "Backbone":
            continue  # added above, with its preprocessing
        else:  # Dense
            units = num_classes if p["units"] == CLASSES else int(p["units"])
            layer = keras.layers.Dense(units, activation=p["activation"], name=name, dtype="float32")
        model_layers.append(layer)
    return keras.Sequential(model_layers, name="cnndesk_model")


def _backbone_layers(spec: LayerSpec, input_shape: tuple[int, int, int]) -> list:
    """The backbone (weights loaded, frozen) and, where the family needs it, its preprocessing before it.

    The model keeps taking 0-255 pixels; MobileNetV3Small and EfficientNetB0
    scale them inside the backbone, MobileNetV2's -1..1 scaling is a Rescaling
    layer in front of it, so every export carries it.
    """
    import keras

    p = spec.full_params()
    backbone = build_backbone(p, input_shape)
    set_fine_tune(backbone, 0)  # the head trains first; training unfreezes the top blocks afterwards
    if p["family"] == "MobileNetV2":
        return [keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocessing"), backbone]
    return [backbone]


def compile_model(model, settings: TrainingSettings) -> None:
    import keras

    opt = {
        "adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop,
        "adamw": keras.optimizers.AdamW, "nadam": keras.optimizers.Nadam,
    }[settings.optimizer](learning_rate=settings.learning_rate)
    model.compile(optimizer=opt, loss=settings.loss, metrics=["accuracy"], steps_per_execution=1)
