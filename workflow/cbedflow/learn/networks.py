"""Network registry: every task names its network (``Task.network``).

========  ==========================================  =======================
name      input (after the channel axis is added)      use
========  ==========================================  =======================
cnn3d     (positions, kx, ky, 1): a pattern sequence   Oxley et al. Fig. 3a
cnn2d     (ny, nx, 1): an image patch                  image-patch tasks
unet1d    (points, 1): a curve                         curve-to-curve tasks
========  ==========================================  =======================

Every builder returns an uncompiled ``tf.keras.Model`` with one head: a
softmax over classes (classification) or a linear output per target
(regression; a curve of targets for ``unet1d``). The CNNs take a second,
linear regression head (``Head.aux`` targets, output ``aux``) beside a
classification head: one network with two outputs, ``[softmax, aux]``
(a task with ``aux``). The training loop, the Horovod backend and
evaluation are the same for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Head:
    """What the network outputs.

    Parameters
    ----------
    kind : str
        ``classification`` or ``regression``.
    size : int
        Classes, or regression targets (channels of a curve).
    aux : int
        Targets of a second, linear regression head on the same features
        (0: none); its output is named ``aux`` and follows the main one.
    """

    kind: str
    size: int
    aux: int = 0


def _head(layers, h, head: Head, name: str = "output"):
    if head.kind == "classification":
        out = layers.Dense(head.size, activation="softmax", name="softmax")(h)
    else:
        out = layers.Dense(head.size, activation=None, name=name)(h)
    if head.aux:
        return [out, layers.Dense(head.aux, activation=None, name="aux")(h)]
    return out


def _with_thickness(layers, h, thickness_input: bool):
    """Join thickness / 100 Å to the flattened features (a second input)."""
    if not thickness_input:
        return h, []
    t = layers.Input(shape=(1,), name="thickness")
    return layers.Concatenate(name="with_thickness")([h, t]), [t]


def _build_cnn(ndim: int, input_name: str, model_name: str, input_shape, head: Head,
               params: dict, thickness_input: bool):
    """The CNN of Oxley et al. in ``ndim`` dimensions: convolution layers
    without max pooling (dropout after each), one average pooling, a dense
    layer (dropout) and the output. ``params['first_axis_pooling']``
    (``max`` or ``average``) first pools the whole first axis (the scan
    positions of a line): the features then do not depend on where along the
    line they appear, as a jittered scan window needs."""
    import tensorflow as tf
    from tensorflow.keras import layers

    conv = {3: layers.Conv3D, 2: layers.Conv2D}[ndim]
    pool_layer = {3: layers.AveragePooling3D, 2: layers.AveragePooling2D}[ndim]
    inp = layers.Input(shape=tuple(input_shape) + (1,), name=input_name)
    h = inp
    for i, f in enumerate(params["conv_filters"]):
        h = conv(f, params["kernel_size"], padding="same", activation="relu", name=f"conv{i}")(h)
        h = layers.Dropout(params["dropout"], name=f"dropout_conv{i}")(h)
    shape = tuple(input_shape)
    first = params.get("first_axis_pooling", "none")
    if first != "none":  # over the whole first axis (a scan line's positions)
        whole = {3: (layers.MaxPooling3D, layers.AveragePooling3D),
                 2: (layers.MaxPooling2D, layers.AveragePooling2D)}[ndim][first == "average"]
        h = whole(pool_size=(shape[0],) + (1,) * (ndim - 1), name=f"{first}_first_axis")(h)
        shape = (1,) + shape[1:]
    pool = tuple(min(params["pool_size"], s) for s in shape)
    h = pool_layer(pool_size=pool, name="average_pool")(h)
    h = layers.Flatten(name="flatten")(h)
    h, extra = _with_thickness(layers, h, thickness_input)
    h = layers.Dense(params["dense_units"], activation="relu", name="dense")(h)
    h = layers.Dropout(params["dropout"], name="dropout_dense")(h)
    out = _head(layers, h, head)
    return tf.keras.Model([inp, *extra] if extra else inp, out, name=model_name)


def build_cnn3d(input_shape, head: Head, params: dict, thickness_input: bool = False):
    """The paper's network (Oxley et al., Fig. 3a): Conv3D layers without max
    pooling, one average pooling, two dense layers (the second is the
    output), dropout after every layer. Input (positions, kx, ky, 1); with
    ``thickness_input`` a second input, thickness / 100 Å, joins the
    flattened features before the dense layer."""
    return _build_cnn(3, "sequence", "cnn3d", input_shape, head, params, thickness_input)


def build_cnn2d(input_shape, head: Head, params: dict, thickness_input: bool = False):
    """The same design in 2D for image patches: Conv2D layers, one average
    pooling, a dense layer and the output. Input (ny, nx, 1)."""
    return _build_cnn(2, "image", "cnn2d", input_shape, head, params, thickness_input)


def build_unet1d(input_shape, head: Head, params: dict, thickness_input: bool = False):
    """A 1D U-Net (Ronneberger et al. 2015, in 1D as MAMBA's): per level two
    Conv1D layers and a pooling by 2 down, an upsampling, a skip connection
    and two Conv1D layers up; the output is a linear 1x1 convolution with
    ``head.size`` channels per point (regression), or a softmax over the
    pooled features (classification). A curve whose length is not a
    multiple of 2^levels is zero-padded and the output cropped back.
    Input (points, 1)."""
    import tensorflow as tf
    from tensorflow.keras import layers

    if thickness_input:
        raise ValueError("network unet1d takes no thickness input; use train.variants "
                         "all or per_thickness")
    if head.aux:
        raise ValueError("network unet1d has no second (aux) head; use cnn2d or cnn3d")
    n = int(input_shape[0])
    filters = list(params["conv_filters"])
    k = params["kernel_size"]
    levels = len(filters)
    pad = (-n) % (2 ** levels)
    inp = layers.Input(shape=(n, 1), name="curve")
    h = layers.ZeroPadding1D((0, pad), name="pad")(inp) if pad else inp
    skips = []
    for i, f in enumerate(filters):
        h = layers.Conv1D(f, k, padding="same", activation="relu", name=f"down{i}a")(h)
        h = layers.Conv1D(f, k, padding="same", activation="relu", name=f"down{i}b")(h)
        skips.append(h)
        h = layers.MaxPooling1D(2, name=f"pool{i}")(h)
        h = layers.Dropout(params["dropout"], name=f"dropout_down{i}")(h)
    h = layers.Conv1D(2 * filters[-1], k, padding="same", activation="relu",
                      name="bottom")(h)
    if head.kind == "classification":
        h = layers.GlobalAveragePooling1D(name="average_pool")(h)
        h = layers.Dense(params["dense_units"], activation="relu", name="dense")(h)
        h = layers.Dropout(params["dropout"], name="dropout_dense")(h)
        return tf.keras.Model(inp, _head(layers, h, head), name="unet1d")
    for i, f in reversed(list(enumerate(filters))):
        h = layers.UpSampling1D(2, name=f"up{i}")(h)
        h = layers.Concatenate(name=f"skip{i}")([h, skips[i]])
        h = layers.Conv1D(f, k, padding="same", activation="relu", name=f"up{i}a")(h)
        h = layers.Conv1D(f, k, padding="same", activation="relu", name=f"up{i}b")(h)
        h = layers.Dropout(params["dropout"], name=f"dropout_up{i}")(h)
    out = layers.Conv1D(head.size, 1, activation=None, name="output")(h)
    if pad:
        out = layers.Cropping1D((0, pad), name="crop")(out)
    return tf.keras.Model(inp, out, name="unet1d")


#: Network name -> builder(input_shape, head, params, thickness_input).
NETWORKS: dict[str, Callable] = {
    "cnn3d": build_cnn3d,
    "cnn2d": build_cnn2d,
    "unet1d": build_unet1d,
}

#: Dimensions of one example each network takes.
INPUT_NDIM = {"cnn3d": 3, "cnn2d": 2, "unet1d": 1}


def build_network(name: str, input_shape, head: Head, params: dict,
                  thickness_input: bool = False):
    """Build network ``name`` for examples of ``input_shape``."""
    if name not in NETWORKS:
        raise ValueError(f"network {name!r} is not one of {', '.join(NETWORKS)}")
    if len(input_shape) != INPUT_NDIM[name]:
        raise ValueError(f"network {name} takes examples of {INPUT_NDIM[name]} dimensions; "
                         f"these have shape {tuple(input_shape)}")
    return NETWORKS[name](tuple(input_shape), head, params, thickness_input)


def head_of(task: dict, y_shape=()) -> Head:
    """The head of a task record (``Task.to_dict``) for targets of
    ``y_shape`` (one example's)."""
    if task["kind"] == "classification":
        return Head("classification", len(task["classes"]), len(task.get("aux") or ()))
    return Head("regression", int(y_shape[-1]) if len(y_shape) else 1)


def model_from_params(params: dict, shape, y_shape=()):
    """The network of ``params`` (the train section, ``task`` record and
    model spec) for examples of ``shape``."""
    task = params["task_spec"]
    return build_network(task["network"], shape, head_of(task, y_shape), params,
                         bool(params.get("model", {}).get("thickness_input", False)))
