"""Pure builder functions for the super-resolution network (no weights, no I/O).

Architecture (why: the lightweight-SR family CARN-M / IMDN / RFDN computes all features at low
resolution, which is what makes a 20-megapixel x4 job affordable):

* one scale-specific 3x3 head conv per scale (LR image -> features),
* a **trunk shared by every scale**: ``blocks`` residual blocks (conv-ReLU-conv + identity) and a
  trunk conv with a long skip, all at low resolution,
* one scale-specific tail per scale: a 3x3 conv to ``3 * s**2`` channels, added to the fixed bicubic
  phases (global residual, ``BicubicPhases``), then sub-pixel upsampling (``PixelShuffle``).

Sharing the trunk means every training step improves x2, x3 and x4 at once (as MDSR did), which on a
CPU budget buys each scale three times the optimisation steps of separate networks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import keras
from keras import layers

from worker.engine.layers import BicubicPhases, PixelShuffle


@dataclass(frozen=True)
class NetworkConfig:
    """Hyper-parameters that fully determine the network's shape (saved beside its weights)."""

    blocks: int = 6
    channels: int = 48
    scales: tuple[int, ...] = field(default=(2, 3, 4))

    @property
    def receptive_radius(self) -> int:
        """LR pixels of context each output pixel depends on, per side.

        Every 3x3 conv adds one: head + 2 per block + trunk conv + tail; the bicubic skip needs 2.
        """
        return max(self.blocks * 2 + 3, 2)

    def to_dict(self) -> dict:
        return {**asdict(self), "scales": list(self.scales)}

    @classmethod
    def from_dict(cls, data: dict) -> NetworkConfig:
        return cls(blocks=int(data["blocks"]), channels=int(data["channels"]),
                   scales=tuple(int(s) for s in data["scales"]))


def _conv(channels: int, name: str, activation: str | None = None, dtype=None,
          kernel_initializer: str = "glorot_uniform") -> layers.Conv2D:
    return layers.Conv2D(channels, 3, padding="same", activation=activation, name=name, dtype=dtype,
                         kernel_initializer=kernel_initializer)


def build_network(config: NetworkConfig) -> keras.Model:
    """Build the multi-scale network: one LR input and one HR output per scale, trunk shared.

    The tails start at zero, so an untrained network is exactly bicubic and training only ever
    learns the missing detail. Input and output pixels are floats in 0..1, NHWC, any spatial size.
    Under a mixed-precision policy the tail, skip and pixel shuffle stay float32 so the output keeps full precision.
    """
    trunk_blocks = [
        (_conv(config.channels, f"trunk_b{i}_conv1", "relu"), _conv(config.channels, f"trunk_b{i}_conv2"))
        for i in range(config.blocks)
    ]
    trunk_out = _conv(config.channels, "trunk_out")

    inputs, outputs = [], []
    for scale in config.scales:
        lr = keras.Input(shape=(None, None, 3), name=f"lr_x{scale}")
        head = _conv(config.channels, f"head_x{scale}")(lr)
        x = head
        for conv1, conv2 in trunk_blocks:
            x = layers.Add()([x, conv2(conv1(x))])
        x = layers.Add()([head, trunk_out(x)])
        residual = _conv(3 * scale * scale, f"tail_x{scale}", dtype="float32", kernel_initializer="zeros")(x)
        skip = BicubicPhases(scale, name=f"bicubic_x{scale}", dtype="float32")(lr)
        phases = layers.Add(dtype="float32")([residual, skip])
        outputs.append(PixelShuffle(scale, name=f"hr_x{scale}", dtype="float32")(phases))
        inputs.append(lr)
    return keras.Model(inputs, outputs, name="residual_sr")


def scale_model(network: keras.Model, scale: int) -> keras.Model:
    """The single-scale view of a multi-scale network (shares its layers and weights)."""
    index = [int(t.name.rsplit("x", 1)[-1]) for t in network.inputs].index(scale)
    return keras.Model(network.inputs[index], network.outputs[index], name=f"residual_sr_x{scale}")


def multiply_adds_per_lr_pixel(config: NetworkConfig, scale: int) -> int:
    """Multiply-adds the network spends per low-resolution input pixel at one scale (for GFLOP/s)."""
    c = config.channels
    head = 9 * 3 * c
    trunk = (2 * config.blocks + 1) * 9 * c * c
    tail = 9 * c * 3 * scale * scale
    skip = 25 * 3 * 3 * scale * scale
    return head + trunk + tail + skip
