"""The checks a model's layer graph (its config) must pass before Keras builds it.

A ``.keras`` archive's ``config.json`` (:mod:`.keras_file`) and a legacy ``.h5``
file's ``model_config`` attribute (:mod:`.h5_file`) go through the same checks:
sizes and nesting within :data:`LIMITS`, no layer that carries Python code,
a parameter count that matches the weights' size, and the names of layers this
Keras does not know. Nothing here imports Keras or TensorFlow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import ModelFileError

KiB = 1024


MiB = 1024 * KiB


GiB = 1024 * MiB


#: layers whose config carries Python code; safe mode refuses to run it
CODE_LAYERS = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda"})


@dataclass(frozen=True)
class Limits:
    """The bounds a model file must keep to; the defaults are documented in ``docs/model-files.md``.

    Args:
        members: most zip members. Keras writes 3. Defaults to 1000.
        config_bytes: largest ``config.json``. ResNet50's is 176 KB. Defaults to 16 MiB.
        metadata_bytes: largest ``metadata.json``, and of cnndesk's ``labels.txt``. Keras writes
            about 64 bytes. Defaults to 1 MiB.
        weights_bytes: largest weights member, uncompressed. ResNet50's is 103 MB,
            VGG16's 528 MB. Defaults to 2 GiB.
        total_bytes: largest sum of all members, uncompressed. Defaults to 3 GiB.
        ratio: most a weights or asset member over ``ratio_floor`` may inflate
            (uncompressed / stored). Keras stores weights uncompressed (ratio 1).
            Defaults to 100.
        ratio_floor: members smaller than this are not ratio-checked. Defaults to 1 MiB.
        depth: deepest nesting of lists and objects in the config. Real models: about 11.
            Defaults to 64.
        string_chars: longest string (or key) in the config. Real layer names are
            under 100 characters. Defaults to 10,000.
        layers: most layers, nested models included. Large keras.applications
            models have under 1,100. Defaults to 5,000.
        dimension: largest unit, filter, embedding or shape number in the config.
            Defaults to 65,536.
    """

    members: int = 1000
    config_bytes: int = 16 * MiB
    metadata_bytes: int = 1 * MiB
    weights_bytes: int = 2 * GiB
    total_bytes: int = 3 * GiB
    ratio: float = 100.0
    ratio_floor: int = 1 * MiB
    depth: int = 64
    string_chars: int = 10_000
    layers: int = 5_000
    dimension: int = 65_536


LIMITS = Limits()


#: config keys whose numbers size the weights; a huge one makes Keras allocate gigabytes
_SIZE_KEYS = frozenset({"units", "filters", "input_dim", "output_dim", "num_heads", "key_dim", "value_dim",
                        "batch_shape", "kernel_size", "depth_multiplier"})


def size_text(n: int) -> str:
    """Bytes as a person reads them: 512 bytes, 1.5 MB, 2.0 GB."""
    if n < KiB:
        return f"{n} bytes"
    for unit, scale in (("GB", GiB), ("MB", MiB), ("KB", KiB)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"  # pragma: no cover


def shown_name(name: str, most: int = 60) -> str:
    """A member name or string, escaped and shortened for a message."""
    text = ascii(name) if not name.isprintable() else repr(name)
    return text if len(text) <= most else text[:most] + "…'"


def code_layers(config) -> list[str]:
    """The names of the classes in ``config`` that carry Python code (Lambda layers), once each."""
    found: list[str] = []
    for node in config_dicts(config):
        cls = node.get("class_name")
        if cls in CODE_LAYERS and cls not in found:
            found.append(cls)
    return found


def code_refusal(name: str) -> str:
    """The one message for a model file whose layers carry code, ``.keras`` or ``.h5`` alike."""
    return f"{name} contains code (e.g. a Lambda layer) that cnndesk will not run from a file it did not make."


def config_dicts(config):
    """Every dict in ``config``, walked without recursion."""
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def parse_config(data: bytes, name: str, limits: Limits):
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelFileError(f"{name} is not a readable .keras model: config.json is not UTF-8 text.") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise ModelFileError(f"{name}: config.json is nested deeper than Python can parse (limit "
                             f"{limits.depth} levels). Refused.") from None
    except ValueError as e:  # JSONDecodeError, and integers of thousands of digits
        raise ModelFileError(f"{name} is not a readable .keras model: config.json is not valid JSON ({e}).") from None


def check_config(config, name: str, limits: Limits) -> None:
    """Depth, string lengths, layer count and size numbers of a parsed config, walked without recursion."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ModelFileError(f"{name} is not a readable .keras model: config.json does not describe a model.")
    layers = 0
    stack: list[tuple[object, int, str]] = [(config, 1, "")]
    while stack:
        node, depth, key = stack.pop()
        if depth > limits.depth:
            raise ModelFileError(f"{name}: config.json is nested more than {limits.depth} levels deep "
                                 "(real models: about 11). Refused.")
        if isinstance(node, dict):
            for k, v in node.items():
                if len(k) > limits.string_chars:
                    raise ModelFileError(f"{name}: config.json holds a key of {len(k):,} characters, over the "
                                         f"limit of {limits.string_chars:,}. Refused.")
                if k == "layers" and isinstance(v, list):
                    layers += len(v)
                    if layers > limits.layers:
                        raise ModelFileError(f"{name} describes more than {limits.layers:,} layers (limit "
                                             f"{limits.layers:,}). Refused.")
                stack.append((v, depth + 1, k))
        elif isinstance(node, list):
            stack.extend((v, depth + 1, key) for v in node)
        elif isinstance(node, str):
            if len(node) > limits.string_chars:
                what = "a layer name" if key == "name" else f"a string (in {key!r})" if key else "a string"
                raise ModelFileError(f"{name}: config.json holds {what} of {len(node):,} characters, over the "
                                     f"limit of {limits.string_chars:,}. Refused.")
        elif isinstance(node, (int, float)) and not isinstance(node, bool) and key in _SIZE_KEYS:
            if abs(node) > limits.dimension:
                raise ModelFileError(f"{name}: config.json sets {key!r} to {node:,}, over the limit of "
                                     f"{limits.dimension:,}. Refused.")


def _layer_parameters(layer: dict) -> int:
    """About how many weights a Dense, Conv or Embedding layer allocates, from its config and
    ``build_config``; 0 for other layers or when the input shape is not given."""
    cls, cfg = layer.get("class_name"), layer.get("config")
    if not isinstance(cfg, dict):
        return 0

    def number(v) -> int:
        return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0

    def product(v) -> int:
        if isinstance(v, int):
            return number(v)
        if isinstance(v, list) and v and all(number(x) for x in v):
            p = 1
            for x in v:
                p *= x
            return p
        return 0

    if cls == "Embedding":
        return number(cfg.get("input_dim")) * number(cfg.get("output_dim"))
    build = layer.get("build_config")
    shape = build.get("input_shape") if isinstance(build, dict) else None
    if not isinstance(shape, list) or not shape:
        return 0
    channels_first = cfg.get("data_format") == "channels_first" and len(shape) > 2
    inputs = number(shape[1] if channels_first else shape[-1])
    if cls == "Dense":
        return inputs * number(cfg.get("units"))
    if isinstance(cls, str) and cls.startswith(("Conv", "SeparableConv", "DepthwiseConv")):
        kernel = product(cfg.get("kernel_size"))
        if cls.startswith("DepthwiseConv"):
            return kernel * inputs * max(number(cfg.get("depth_multiplier")), 1)
        if cls.startswith("SeparableConv"):
            mult = max(number(cfg.get("depth_multiplier")), 1)
            return kernel * inputs * mult + inputs * mult * number(cfg.get("filters"))
        return kernel * inputs * number(cfg.get("filters"))
    return 0


def estimate_parameters(config) -> int:
    """The weights of every Dense and convolution layer anywhere in ``config`` (biases and norms not counted)."""
    total = 0
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            total += _layer_parameters(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return total


def check_parameters(config, name: str, weights_bytes: int) -> None:
    """Refuse a config whose layers would allocate far more than its weights file holds.

    Keras creates a model's variables before it reads the weights, so a small
    file that describes, say, ``Dense(60000)`` after a large ``Flatten`` would
    take tens of GB. A real file holds about 4 bytes per parameter.
    """
    total = estimate_parameters(config)
    need = 4 * total
    if need > 2 * weights_bytes + 64 * MiB:
        raise ModelFileError(f"{name} describes layers of about {total:,} parameters ({size_text(need)} of memory) but "
                             f"its weights file holds only {size_text(weights_bytes)}: a memory bomb or a damaged "
                             "file. Refused.")


def unknown_classes(config, is_known=None) -> list[tuple[str, str]]:
    """The classes of ``config`` that Keras cannot build: (kind, name) pairs, in order, once each.

    An object of Keras's own has a ``module`` under ``keras``; a custom one
    (``@register_keras_serializable``) has a ``registered_name`` such as
    ``mine>Scale01`` and is known only if this process registered it.

    Args:
        config: a parsed ``config.json``.
        is_known: ``is_known(registered_name) -> bool``, e.g. via
            ``keras.saving.get_registered_object``. Without it (before Keras is
            imported) only classes that lived in the saving program itself
            (``module`` null or ``__main__``) count as unknown: cnndesk
            registers no classes of its own.
    """
    found: list[tuple[str, str]] = []
    stack: list[tuple[object, str]] = [(config, "")]
    while stack:
        node, key = stack.pop()
        if isinstance(node, dict):
            cls = node.get("class_name")
            # Keras's own markers ("__keras_tensor__", "__tuple__", ...) are not classes
            if (isinstance(cls, str) and "config" in node and not (cls.startswith("__") and cls.endswith("__"))
                    and ("module" in node or "registered_name" in node)):
                module = node.get("module")
                registered = node.get("registered_name")
                keras_own = isinstance(module, str) and (module == "keras" or module.startswith("keras."))
                if is_known is None and module not in (None, "__main__"):
                    keras_own = True  # a class from a package: only Keras can tell whether it loads
                if not keras_own:
                    label = registered if isinstance(registered, str) and registered else (
                        f"{module}.{node['class_name']}" if isinstance(module, str) else node["class_name"])
                    if is_known is None or not is_known(label):
                        kind = "layer" if key == "layers" else "object"
                        if (kind, label) not in found:
                            found.append((kind, label))
            stack.extend((v, k) for k, v in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend((v, key) for v in reversed(node))
    return found


def _class_of(label: str) -> str:
    """``mine>Scale01`` or ``my.module.Scale01`` -> ``Scale01``."""
    return label.split(">")[-1].rsplit(".", 1)[-1] or label


def describe_unknown(found: list[tuple[str, str]]) -> str:
    """"the model uses a layer cnndesk cannot load safely: Scale01 (custom code, registered as `mine>Scale01`)…"."""
    kind, label = found[0]
    cls = _class_of(label)
    where = f", registered as `{label}`" if label != cls else ""
    more = f" and {len(found) - 1} more custom class{'es' if len(found) > 2 else ''}" if len(found) > 1 else ""
    what = "a layer" if kind == "layer" else "an object"
    return (f"the model uses {what} cnndesk cannot load safely: {cls} (custom code{where}){more}; cnndesk loads "
            "only Keras's own layers, so use the model in the program that defines them")
