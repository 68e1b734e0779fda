"""Over-parameterised 3x3 convs for training, fused into plain 3x3 convs for shipping.

Why: a small network trains to a better optimum when each of its convs is trained as several linear branches
(ECBSR, RepVGG, OREPA): the branches change how gradient steps move the kernel (the centre tap and the
composed 1x1 -> 3x3 path learn faster, as in a deep linear network), while their sum is still one 3x3 conv.
The branches are fused *online*: every step computes the one 3x3 kernel they sum to and convolves once
(OREPA's idea), so a training step costs what the plain network's does, the borders are exact (no branch pads
separately), and the shipped network is the registered architecture unchanged: the engine, tiling and every
inference path never see this module.

Branches of :class:`RepConv2D`, summed into one kernel:

* a full 3x3 kernel,
* a 1x1 kernel (the centre tap),
* a 1x1 expansion to ``expand`` x the input channels followed by a 3x3 (no bias between them: the composition
  is then exactly a 3x3 kernel),
* the identity, where input and output channels agree (fixed, not learned).
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
from keras import layers, ops


@keras.saving.register_keras_serializable(package="upscaler")
class RepConv2D(layers.Layer):
    """A 3x3 "same" conv whose kernel is the sum of the branches above; see the module docstring."""

    def __init__(self, filters: int, activation: str | None = None, expand: int = 2,
                 kernel_initializer: str = "glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.filters, self.expand = int(filters), int(expand)
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = kernel_initializer

    def build(self, input_shape) -> None:
        cin = int(input_shape[-1])
        f, mid = self.filters, self.expand * cin
        self.full = self.add_weight(name="full", shape=(3, 3, cin, f), initializer=self.kernel_initializer)
        self.center = self.add_weight(name="center", shape=(cin, f), initializer="zeros")
        self.widen = self.add_weight(name="widen", shape=(cin, mid), initializer="glorot_uniform")
        self.spread = self.add_weight(name="spread", shape=(3, 3, mid, f), initializer="zeros")
        self.bias = self.add_weight(name="bias", shape=(f,), initializer="zeros")
        identity = np.zeros((3, 3, cin, f), np.float32)
        if cin == f:
            identity[1, 1] = np.eye(f, dtype=np.float32)
        self.identity = identity

    def kernel(self):
        """The one 3x3 kernel the branches sum to (float32, differentiable in every branch)."""
        full, center, widen, spread = (ops.cast(w, "float32") for w in (self.full, self.center, self.widen,
                                                                        self.spread))  # bf16 autocast undone
        centre = ops.pad(ops.reshape(center, (1, 1, *center.shape)), ((1, 1), (1, 1), (0, 0), (0, 0)))
        return full + centre + ops.einsum("im,hwmo->hwio", widen, spread) + ops.convert_to_tensor(self.identity)

    def call(self, x):
        kernel = ops.cast(self.kernel(), self.compute_dtype)
        y = ops.conv(x, kernel, padding="same") + ops.cast(self.bias, self.compute_dtype)
        return self.activation(y) if self.activation is not None else y

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def fused_weights(self) -> list[np.ndarray]:
        """``[kernel, bias]`` of the plain ``Conv2D`` this layer computes."""
        return [np.asarray(self.kernel(), np.float32), np.asarray(self.bias, np.float32)]

    def load_fused(self, kernel: np.ndarray, bias: np.ndarray) -> None:
        """Start from a plain conv's weights: the full branch takes them less the identity, the learned branches
        start at zero where that leaves the sum unchanged (``widen`` keeps its random start, or ``spread`` would
        never get a gradient), so the layer computes exactly the plain conv."""
        self.full.assign(np.asarray(kernel, np.float32) - self.identity)
        self.center.assign(np.zeros(self.center.shape, np.float32))
        self.spread.assign(np.zeros(self.spread.shape, np.float32))
        self.bias.assign(np.asarray(bias, np.float32))

    def get_config(self) -> dict:
        return {**super().get_config(), "filters": self.filters, "expand": self.expand,
                "activation": keras.activations.serialize(self.activation) if self.activation else None,
                "kernel_initializer": self.kernel_initializer}


def rep_conv(channels: int, name: str, dtype: str, activation: str | None = None,
             kernel_initializer: str = "glorot_uniform") -> layers.Layer:
    """The conv factory the residual builder takes (``conv=``): an over-parameterised conv where the shipped
    network has a plain 3x3 one (the builder keeps its zero-started tails plain)."""
    return RepConv2D(channels, activation=activation, kernel_initializer=kernel_initializer, name=name, dtype=dtype)


CONV_FACTORIES: dict[str, Callable | None] = {"plain": None, "rep": rep_conv}


def plain_weights(layer: layers.Layer) -> list[np.ndarray]:
    """The weights a layer of the shipped (plain) network takes from its same-named training layer."""
    return layer.fused_weights() if isinstance(layer, RepConv2D) else layer.get_weights()


def set_plain_weights(layer: layers.Layer, weights: list[np.ndarray]) -> None:
    """Give a training layer the weights of its plain counterpart (the inverse of ``plain_weights``)."""
    if isinstance(layer, RepConv2D):
        layer.load_fused(*weights)
    else:
        layer.set_weights(weights)
