"""Finding layers, also inside nested sub-models, and building feature models that reach them.

``Model.get_layer`` sees only top-level layers, and wiring a nested base's ``layer.output`` to the outer
``model.inputs`` fails with "Graph disconnected". Here layers are addressed by path
(``"inception_v3/mixed10"``) and feature models are built by re-tracing the outer graph on a fresh
input: each layer is called again (sharing its weights), nested models are traced recursively, and the
symbolic tensors of the wanted layers are captured on the way.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate

from xconv.errors import UnknownNameError, XconvError

#: Layer types whose output is a feature map worth showing as activations (conv and pooling layers).
FEATURE_LAYER_TYPES = (
    "Conv2D", "SeparableConv2D", "DepthwiseConv2D", "Conv2DTranspose",
    "MaxPooling2D", "AveragePooling2D",
)


@dataclass(frozen=True)
class LayerInfo:
    path: str
    layer: object
    type: str
    output_shape: tuple

    @property
    def is_spatial(self) -> bool:
        return len(self.output_shape) == 4


def iter_layers(model, prefix: str = ""):
    """Every layer in network order as LayerInfo, descending into nested models (the model itself excluded)."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        path = prefix + layer.name
        if isinstance(layer, keras.Model):
            yield from iter_layers(layer, path + "/")
        yield LayerInfo(path, layer, type(layer).__name__, output_shape_of(layer))


def output_shape_of(layer) -> tuple:
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):  # layers never called symbolically, or shared with several outputs
        return ()
    return tuple(shape)


def layer_order(model) -> dict[str, int]:
    """Layer path -> position in network order (nested layers included), to sort layers the user listed."""
    return {info.path: index for index, info in enumerate(iter_layers(model))}


def find_layer(model, name: str) -> LayerInfo:
    """Resolve a full path or a bare layer name (when unique) to a layer, with the valid names on error."""
    layers = list(iter_layers(model))
    exact = [info for info in layers if info.path == name]
    if exact:
        return exact[0]
    by_name = [info for info in layers if info.path.rsplit("/", 1)[-1] == name]
    if len(by_name) == 1:
        return by_name[0]
    if len(by_name) > 1:
        raise XconvError(f"layer name {name!r} is ambiguous; use one of: {', '.join(i.path for i in by_name)}")
    raise UnknownNameError("layer", name, [info.path for info in layers if info.is_spatial])


#: Layers whose output is the (preprocessed) input image, not a feature of it.
INPUT_LAYER_TYPES = ("InputLayer", "Rescaling", "Normalization")


def spatial_layer(model, name: str, view: str) -> str:
    """The path of a layer whose output is a feature map (N, h, w, c), else one readable XconvError.

    Every view that reads feature maps checks this up front, so a dense layer gets this line rather than a
    shape error from inside a traced step.
    """
    info = find_layer(model, name)
    if not info.is_spatial:
        raise XconvError(f"{view} needs a layer with a spatial output (N, h, w, channels); {info.path!r} has none: "
                         "choose a conv, pooling or activation layer of the conv part")
    if info.type in INPUT_LAYER_TYPES:  # the image itself: Grad-CAM's gradient there came back None from the graph
        raise XconvError(f"{view} needs a layer the network computes from the image; {info.path!r} ({info.type}) "
                         "is the input itself: choose a conv, pooling or activation layer of the conv part")
    return info.path


def feature_layers(model) -> list[LayerInfo]:
    """Conv and pooling layers with spatial outputs, in network order (the activations view)."""
    return [info for info in iter_layers(model) if info.is_spatial and info.type in FEATURE_LAYER_TYPES]


def default_cam_layer(model) -> str:
    """The last layer with a spatial (N, h, w, c) output: the last conv block, also inside a nested base.

    A nested model is listed after its own layers, so its inner last block wins over the nested model's
    own output, which is the same tensor under a name that ``find_layer`` users would not expect.
    """
    spatial = [info for info in iter_layers(model) if info.is_spatial and not is_container(info.layer)]
    spatial = [info for info in spatial if info.type not in INPUT_LAYER_TYPES]
    if not spatial:
        raise XconvError(f"model {model.name!r} has no layer with a spatial (N, h, w, c) output to explain")
    return spatial[-1].path


def is_container(layer) -> bool:
    import keras

    return isinstance(layer, keras.Model)


class ChannelSelection:
    """The channels a caller needs from one layer's output. When that layer concatenates branches along the
    channel axis (an Inception block), only the branches holding a needed channel are kept in the feature
    model, so the others are never computed; ``positions`` then says where each needed channel sits in the
    kept branches' concatenation (the identity when nothing is left out)."""

    def __init__(self, channels):
        self.channels = sorted({int(channel) for channel in channels})
        self.positions = list(self.channels)

    def select(self, layer, args, output):
        """The tensor holding the needed channels: ``output`` itself, or the kept branches' concatenation."""
        import keras

        if not isinstance(layer, keras.layers.Concatenate) or len(output.shape) < 2 or \
                layer.axis not in (-1, len(output.shape) - 1) or not isinstance(args[0], (list, tuple)):
            return output
        widths = [int(branch.shape[-1]) for branch in args[0]]
        kept, self.positions = kept_branches(widths, self.channels)
        if len(kept) == len(widths):
            return output
        branches = [args[0][index] for index in kept]
        return branches[0] if len(branches) == 1 else keras.layers.Concatenate(axis=-1)(branches)


def kept_branches(widths: list[int], channels: list[int]) -> tuple[list[int], list[int]]:
    """For a concatenation of branches ``widths`` channels wide: the branches holding any of ``channels``,
    and each channel's position in the concatenation of just those branches."""
    starts = list(accumulate(widths, initial=0))
    owner = [max(b for b in range(len(widths)) if starts[b] <= channel) for channel in channels]
    kept = sorted(set(owner))
    kept_start = {branch: sum(widths[b] for b in kept if b < branch) for branch in kept}
    return kept, [kept_start[branch] + channel - starts[branch] for branch, channel in zip(owner, channels)]


def build_feature_model(model, layer_paths: list[str], head: bool = True, spatial_size=None, transform=None,
                        selection: ChannelSelection | None = None):
    """A keras.Model: input -> [each wanted layer's output..., logits, probabilities].

    ``logits`` is the pre-softmax score when the model ends in a softmax (a final ``Softmax`` layer, an
    ``Activation`` or a ``Dense`` with softmax activation); Grad-CAM differentiates it, as in Selvaraju et
    al. Otherwise it is the model output itself. With ``head=False`` the model stops at the wanted layers (no wasted compute
    above them), and ``spatial_size`` may then set another input size, ``(None, None)`` for any.
    ``transform(layer, output)`` may replace each layer's output in the copy (guided backpropagation's
    gradient gates, say); the user's model itself is never changed. ``selection`` (one layer, ``head=False``)
    keeps only the part of the layer's output holding the channels it names.
    """
    import keras

    wanted = set(layer_paths)
    shape = tuple(model.inputs[0].shape)
    if spatial_size is not None:
        shape = (shape[0], *spatial_size, shape[-1])
    inputs = keras.Input(batch_shape=shape, dtype=model.inputs[0].dtype, name="xconv_input")
    captured: dict[str, object] = {}
    final = last_layer(model) if head else None
    try:
        outputs = _trace(model, inputs, wanted, "", captured, final, transform, selection)
    except (ValueError, TypeError) as error:
        if spatial_size is None:
            raise
        raise XconvError(f"model {model.name!r} only takes its own input size {shape[1:3]} here: {error}") from None
    missing = [path for path in layer_paths if path not in captured]
    if missing:
        raise XconvError(f"layers {missing} are not on the path from the model input to its output")
    features = [captured[p] for p in layer_paths]
    if not head:
        return keras.Model(inputs, features, name=f"{model.name}_features")
    logits = captured.get("__logits__", outputs)
    return keras.Model(inputs, features + [logits, outputs], name=f"{model.name}_features")


def build_head_model(model, layer_path: str):
    """A keras.Model: the output of layer ``layer_path`` -> [logits, probabilities], the network above it.

    Methods that perturb a layer's features (Ablation-CAM) run only this part for each perturbed copy. A
    layer inside nested models is cut in each graph on the way out: the rest of the nested model above it
    (nothing when the layer is the nested model's output, as ``inception_v3/mixed10`` in a transfer model;
    its pooling when a keras.applications base was built with ``pooling="avg"``), then the graph around
    it. A layer that tensors from below it skip around (a residual block's inner layer) has no head of
    its own: that is an error naming the layer.
    """
    import keras

    parts = layer_path.split("/")
    inner = find_layer(model, layer_path).layer
    pieces = []  # the part above the layer in each graph, innermost first
    for depth in range(len(parts) - 1, 0, -1):
        container = find_layer(model, "/".join(parts[:depth])).layer
        if len(container.outputs) != 1:
            raise XconvError(f"layer {layer_path!r} is inside {container.name!r}, which has several outputs; "
                             "choose a layer of the outer model")
        if any(container.outputs[0] is tensor for tensor in outputs_in_parents(inner)):
            inner = container  # the layer is the nested model's output: nothing of it lies above
            continue
        pieces.append(_graph_above(container, inner, container.outputs[0], layer_path))
        inner = container
    pieces.append(_graph_above(model, inner, model.outputs[0], layer_path))
    features = keras.Input(batch_shape=tuple(find_layer(model, layer_path).output_shape), name="xconv_features")
    output = features
    for piece in pieces:
        output = piece(output)
    return build_feature_model(keras.Model(features, output, name=f"{model.name}_above"), [], head=True)


def _graph_above(graph, layer, output, layer_path: str):
    """The part of ``graph`` from ``layer``'s output to ``output``."""
    import keras

    for tensor in outputs_in_parents(layer):  # a layer shared by several models has one output per model
        try:
            return keras.Model(tensor, output, name=f"{graph.name}_above_{layer.name}")
        except ValueError:
            continue
    raise XconvError(f"layer {layer_path!r} does not decide the prediction alone: the network also uses tensors "
                     f"from below it (a skip connection); choose a later layer, e.g. the last conv block")


def outputs_in_parents(layer) -> list:
    """The tensors ``layer`` produces in the graphs that call it, latest call first: a nested model's
    ``.output`` is its own graph's output, and a loaded Sequential's layers were called once per graph
    Keras built for it (``.output`` is the first, not the model's), so the call nodes are asked (Keras
    keeps no public handle on them)."""
    if getattr(layer, "_inbound_nodes", None):
        return [node.outputs[0] for node in reversed(layer._inbound_nodes)]
    return [layer.output]


def last_layer(model):
    layer = model.layers[-1]
    return last_layer(layer) if is_container(layer) else layer


def _trace(model, inputs, wanted, prefix, captured, final, transform=None, selection=None):
    """Call the layers of ``model`` on ``inputs`` in graph order, capturing wanted tensors by path."""
    def call(layer, *args, **kwargs):
        path = prefix + layer.name
        if is_container(layer) and (transform is not None or any(w.startswith(path + "/") for w in wanted) or (
            final is not None and final in iter_layer_objects(layer)
        )):
            output = _call_nested(layer, args[0], wanted, path + "/", captured, final, transform, selection)
        elif layer is final:
            output = _call_capturing_logits(layer, args, kwargs, captured)
        else:
            output = layer(*args, **kwargs)
            if transform is not None:
                output = transform(layer, output)
        if path in wanted:
            captured[path] = output if selection is None else selection.select(layer, args, output)
        return output

    return retrace(model, inputs, call)


def retrace(model, inputs, call):
    """Run ``model``'s graph again on ``inputs``, each layer call going through ``call(layer, *args, **kwargs)``.

    The layers themselves are shared, not copied; ``call`` may substitute what a layer returns.
    """
    import keras

    if isinstance(model, keras.Sequential):
        x = inputs
        for layer in model.layers:
            x = call(layer, x)
        return x
    if isinstance(model.input, (list, tuple)):
        inputs = type(model.input)([inputs])
    cloned = keras.models.clone_model(model, input_tensors=inputs, clone_function=lambda layer: layer,
                                      call_function=call)
    return cloned.outputs[0] if len(cloned.outputs) == 1 else cloned.outputs


def _call_nested(model, tensor, wanted, prefix, captured, final, transform=None, selection=None):
    """Trace a nested model on its own fresh input, wrap it as one multi-output model, call that on ``tensor``.

    Re-tracing it directly on ``tensor`` would make Keras look for the nested graph's inputs upstream of
    the outer layers that feed it (a Rescaling, say) and fail as "not connected".
    """
    import keras

    inner_input = keras.Input(batch_shape=tuple(tensor.shape), dtype=model.inputs[0].dtype)
    inner: dict[str, object] = {}
    output = _trace(model, inner_input, wanted, prefix, inner, final, transform, selection)
    names = list(inner)
    results = keras.Model(inner_input, [output] + [inner[name] for name in names], name=f"{model.name}_traced")(tensor)
    captured.update(zip(names, results[1:]))
    return results[0]


def iter_layer_objects(model):
    return [info.layer for info in iter_layers(model)]


def binary_unit(layer) -> bool:
    """A binary classifier's last layer as Keras examples write it: one unit, its log-odds z (``Dense(1)``,
    trained ``from_logits``) or p = sigmoid(z) (``Dense(1, activation="sigmoid")``, or ``Activation("sigmoid")``
    on one value)."""
    import keras

    activation = getattr(getattr(layer, "activation", None), "__name__", "")
    if isinstance(layer, keras.layers.Dense):
        return layer.units == 1 and activation in ("sigmoid", "linear")
    return isinstance(layer, keras.layers.Activation) and activation == "sigmoid" and \
        tuple(layer.output.shape)[-1:] == (1,)


def output_classes(model) -> int:
    """How many classes xconv sees: the output's width, or 2 for one binary unit (see ``binary_unit``)."""
    return 2 if binary_unit(last_layer(model)) else int(model.outputs[0].shape[-1])


def dense_logits(layer, inputs):
    """A Dense layer's output before its activation, computed with its own weights."""
    from keras import ops

    logits = ops.matmul(inputs, layer.kernel)
    return logits + layer.bias if layer.use_bias else logits


def _call_capturing_logits(layer, args, kwargs, captured):
    """Call the model's last layer and keep its pre-softmax input (or pre-activation) as the logits.

    One binary unit with log-odds z becomes two classes: logits (-z/2, z/2), whose softmax is exactly
    (1 - sigmoid(z), sigmoid(z)) and whose difference is z, so every method sees a two-class softmax."""
    import keras
    from keras import ops

    if binary_unit(layer):
        z = dense_logits(layer, args[0]) if isinstance(layer, keras.layers.Dense) else args[0]
        logits = ops.concatenate([-z / 2, z / 2], axis=-1)
        captured["__logits__"] = logits
        return ops.softmax(logits, axis=-1)
    is_softmax = getattr(layer, "activation", None) in (keras.activations.softmax,) or (
        getattr(getattr(layer, "activation", None), "__name__", "") == "softmax"
    )
    # A Softmax layer (Sequential([base, layers.Softmax()]), as TensorFlow's tutorials end a classifier) has
    # no activation attribute: its input is the logits all the same.
    if isinstance(layer, keras.layers.Softmax) or (isinstance(layer, keras.layers.Activation) and is_softmax):
        captured["__logits__"] = args[0]
        return layer(*args, **kwargs)
    if isinstance(layer, keras.layers.Dense) and is_softmax:
        logits = dense_logits(layer, args[0])
        captured["__logits__"] = logits
        return ops.softmax(logits, axis=-1)
    return layer(*args, **kwargs)
