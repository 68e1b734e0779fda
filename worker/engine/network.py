"""Pure builder functions for the residual super-resolution networks (no weights, no I/O).

Architecture (why: the lightweight-SR family CARN-M / IMDN / RFDN computes all features at low
resolution, which is what makes a 20-megapixel x4 job affordable):

* one scale-specific 3x3 head conv per scale (LR image -> features),
* a **trunk shared by every scale**: ``blocks`` residual blocks (conv-ReLU-conv + identity) and a
  trunk conv with a long skip, all at low resolution,
* one scale-specific tail per scale: a 3x3 conv to ``3 * s**2`` channels, added to the fixed bicubic
  phases (global residual, ``BicubicPhases``), then sub-pixel upsampling (``PixelShuffle``).

Sharing the trunk means every training step improves x2, x3 and x4 at once (as MDSR did), which on a
CPU budget buys each scale three times the optimisation steps of separate networks.

Two architectures are registered from this one builder: ``residual_sr`` (the fidelity network) and
``residual_sr_cond``, the same network with a degradation-strength plane concatenated to its input
(SRMD's way of conditioning on the degradation): one set of weights serves every JPEG quality and noise
level, and a user's ``denoise`` value is simply the plane's value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import keras
import numpy as np
from keras import layers

from worker.engine.archs import register_arch
from worker.engine.layers import BicubicPhases, BlockGridPlanes, CropLike, PixelShuffle, PixelUnshuffle, StrengthPlane


@dataclass(frozen=True)
class NetworkConfig:
    """Hyper-parameters that fully determine the network's shape (saved beside its weights)."""

    blocks: int = 6
    channels: int = 48
    scales: tuple[int, ...] = field(default=(2, 3, 4))
    jpeg_grid: int = 0  # block period the network is told its input's position in (8 for JPEG); 0: not told
    half_res_blocks: int = 0  # residual blocks of the half-resolution branch before the trunk; 0: no branch
    half_res_channels: int = 96

    @property
    def receptive_radius(self) -> int:
        """LR pixels of context each output pixel depends on, per side.

        Every 3x3 conv adds one: head + 2 per block + trunk conv + tail; the bicubic skip needs 2. A 3x3 conv
        of the half-resolution branch adds two, and its 2x2 cells one more.
        """
        branch = 4 * self.half_res_blocks + 1 if self.half_res_blocks else 0
        return max(self.blocks * 2 + 3, 2) + branch

    @property
    def alignment(self) -> int:
        """Image coordinates a window must start on (a multiple of) to see the whole image's 2x2 cells."""
        return 2 if self.half_res_blocks else 1

    def to_dict(self) -> dict:
        return {**asdict(self), "scales": list(self.scales)}

    @property
    def shape_words(self) -> str:
        """The network's shape in words, for its record's description."""
        words = f"{self.blocks} blocks x {self.channels} ch, trunk shared by {'/'.join(f'x{s}' for s in self.scales)}"
        if self.jpeg_grid:
            words += ", told the JPEG block grid"
        if self.half_res_blocks:
            words += f", a half-resolution branch of {self.half_res_blocks} blocks x {self.half_res_channels} ch"
        return words

    @classmethod
    def from_dict(cls, data: dict) -> NetworkConfig:
        """A config from a record; fields added after a record was written take their defaults."""
        default = cls()
        return cls(blocks=int(data["blocks"]), channels=int(data["channels"]),
                   scales=tuple(int(s) for s in data["scales"]),
                   jpeg_grid=int(data.get("jpeg_grid", default.jpeg_grid)),
                   half_res_blocks=int(data.get("half_res_blocks", default.half_res_blocks)),
                   half_res_channels=int(data.get("half_res_channels", default.half_res_channels)))

    def multiply_adds_per_lr_pixel(self, scale: int) -> int:
        """Multiply-adds the network spends per low-resolution input pixel at one scale (for GFLOP/s)."""
        c = self.channels
        # counts the strength plane too (the plain network is 27 c cheaper, a rounding error) and the grid planes
        head = 9 * (4 + 2 * self.jpeg_grid) * c
        trunk = (2 * self.blocks + 1) * 9 * c * c
        tail = 9 * c * 3 * scale * scale
        skip = 25 * 3 * 3 * scale * scale
        h = self.half_res_channels
        branch = (self.half_res_blocks * 2 * 9 * h * h + 2 * 4 * c * h) // 4 if self.half_res_blocks else 0
        return head + branch + trunk + tail + skip


def block_layer_names(index: int) -> tuple[str, str]:
    """Names of residual block ``index``'s two convs; the second one closes the block's residual branch."""
    return f"trunk_b{index}_conv1", f"trunk_b{index}_conv2"


def closes_residual_branch(layer_name: str) -> bool:
    """True for a block's second conv: zero weights there make the whole block an identity (net2deeper)."""
    return re.fullmatch(r"trunk_b\d+_conv2", layer_name) is not None


ConvFactory = Callable[..., layers.Layer]  # (channels, name, dtype, activation=None, kernel_initializer=...)


def _conv(channels: int, name: str, dtype: str, activation: str | None = None,
          kernel_initializer: str = "glorot_uniform") -> layers.Conv2D:
    return layers.Conv2D(channels, 3, padding="same", activation=activation, name=name, dtype=dtype,
                         kernel_initializer=kernel_initializer)


class _HalfResBranch:
    """Context at half resolution, added to the head's features before the trunk.

    Why: a JPEG's damage spans its 8x8 blocks and beyond, wider than the trunk's 15-pixel reach, and at half
    resolution a 3x3 conv sees twice as far and carries ``half_res_channels`` (4x the cells' worth) for the
    multiply-adds of a full-resolution one (the multi-scale trunks of JPEG restoration networks, MWCNN, FBCNN).
    Its closing 1x1 conv starts at zero, so a network warm-started with a new branch computes exactly what it
    did before.
    """

    def __init__(self, config: NetworkConfig, dtype: str, conv: ConvFactory):
        h = config.half_res_channels
        self.unshuffle = PixelUnshuffle(name="branch_unshuffle", dtype=dtype)
        self.enter = layers.Conv2D(h, 1, name="branch_in", dtype=dtype)
        self.blocks = [(conv(h, f"branch_b{i}_conv1", dtype, "relu"), conv(h, f"branch_b{i}_conv2", dtype))
                       for i in range(config.half_res_blocks)]
        self.leave = layers.Conv2D(4 * config.channels, 1, name="branch_out", dtype=dtype, kernel_initializer="zeros")
        self.dtype = dtype

    def __call__(self, features, scale: int):
        x = self.enter(self.unshuffle(features))
        for conv1, conv2 in self.blocks:
            x = layers.Add(dtype=self.dtype)([x, conv2(conv1(x))])
        up = PixelShuffle(2, name=f"branch_shuffle_x{scale}", dtype=self.dtype)(self.leave(x))
        return layers.Add(dtype=self.dtype)([features, CropLike(name=f"branch_crop_x{scale}", dtype=self.dtype)(
            [up, features])])


def _build(config: NetworkConfig, dtype: str, conditioned: bool, name: str, conv: ConvFactory | None) -> keras.Model:
    """The multi-scale network: per scale one LR input (plus a strength input if conditioned and a
    block-grid input if told the JPEG grid), one HR output.

    The tails start at zero, so an untrained network is exactly bicubic and training only ever
    learns the missing detail. Input and output pixels are floats in 0..1, NHWC, any spatial size.
    ``dtype`` is a Keras dtype policy name given to each layer (never set process-wide): under
    ``mixed_bfloat16`` the tail, skip and pixel shuffle stay float32 so the output keeps full precision.
    ``conv`` makes each 3x3 conv but the tails (default: a plain ``Conv2D``); training passes an
    over-parameterised one that computes the same function class (``worker/training/reparam.py``).
    """
    conv = conv or _conv
    trunk_blocks = []
    for i in range(config.blocks):
        first, second = block_layer_names(i)
        trunk_blocks.append((conv(config.channels, first, dtype, "relu"), conv(config.channels, second, dtype)))
    trunk_out = conv(config.channels, "trunk_out", dtype)
    branch = _HalfResBranch(config, dtype, conv) if config.half_res_blocks else None

    inputs, outputs = [], []
    for scale in config.scales:
        lr = keras.Input(shape=(None, None, 3), name=f"lr_x{scale}")
        inputs.append(lr)
        features_in = lr
        if conditioned:
            strength = keras.Input(shape=(1,), name=f"strength_x{scale}")
            inputs.append(strength)
            features_in = StrengthPlane(name=f"plane_x{scale}", dtype=dtype)([lr, strength])
        if config.jpeg_grid:
            grid = keras.Input(shape=(3,), name=f"grid_x{scale}")
            inputs.append(grid)
            planes = BlockGridPlanes(config.jpeg_grid, name=f"grid_planes_x{scale}", dtype=dtype)
            features_in = planes([features_in, grid])
        head = conv(config.channels, f"head_x{scale}", dtype)(features_in)
        if branch is not None:
            head = branch(head, scale)
        x = head
        for conv1, conv2 in trunk_blocks:
            x = layers.Add(dtype=dtype)([x, conv2(conv1(x))])
        x = layers.Add(dtype=dtype)([head, trunk_out(x)])
        residual = _conv(3 * scale * scale, f"tail_x{scale}", "float32", kernel_initializer="zeros")(x)
        skip = BicubicPhases(scale, name=f"bicubic_x{scale}", dtype="float32")(lr)
        phases = layers.Add(dtype="float32")([residual, skip])
        outputs.append(PixelShuffle(scale, name=f"hr_x{scale}", dtype="float32")(phases))
    return keras.Model(inputs, outputs, name=name)


@register_arch("residual_sr", NetworkConfig, conditioned=False)
def build_residual_sr(config: NetworkConfig, dtype: str = "float32", conv: ConvFactory | None = None) -> keras.Model:
    """Fidelity network: residual CNN at low resolution, bicubic global skip, sub-pixel output, for clean inputs."""
    return _build(config, dtype, conditioned=False, name="residual_sr", conv=conv)


@register_arch("residual_sr_cond", NetworkConfig, conditioned=True)
def build_residual_sr_cond(config: NetworkConfig, dtype: str = "float32",
                           conv: ConvFactory | None = None) -> keras.Model:
    """Robust network: the same residual CNN told how damaged its input is (strength 0 clean .. 1 heavy), for
    JPEG-compressed and noisy inputs."""
    return _build(config, dtype, conditioned=True, name="residual_sr_cond", conv=conv)


def scale_model(network: keras.Model, scale: int) -> keras.Model:
    """The single-scale view of a multi-scale network (shares its layers and weights).

    Its inputs are ``[lr]``, or ``[lr, strength]`` for a conditioned network, plus ``grid`` for one told the
    JPEG block grid (``NetworkConfig.jpeg_grid``).
    """
    suffix = f"_x{scale}"
    picked = [t for t in network.inputs if t.name.endswith(suffix)]
    scales = [int(t.name.rsplit("x", 1)[-1]) for t in network.inputs if t.name.startswith("lr_")]
    return keras.Model(picked if len(picked) > 1 else picked[0], network.outputs[scales.index(scale)],
                       name=f"{network.name}_x{scale}")


def feed(model: keras.Model, lr: dict[int, np.ndarray], strength: dict[int, np.ndarray],
         grid: dict[int, np.ndarray]) -> list[np.ndarray] | np.ndarray:
    """The arrays ``model`` takes, in its input order (the array alone for a one-input model, as
    ``scale_model`` builds it): each input's name (``lr_x4``, ``strength_x4``, ``grid_x4``) says which kind
    and scale it is, so training, validation and the engine feed every architecture of the family one way."""
    arrays = {"lr": lr, "strength": strength, "grid": grid}
    fed = []
    for tensor in model.inputs:
        kind, _, scale = tensor.name.rpartition("_x")
        if kind not in arrays or not scale.isdigit():
            raise ValueError(f"network input {tensor.name!r} is not named <kind>_x<scale> with a known kind")
        fed.append(arrays[kind][int(scale)])
    return fed if len(fed) > 1 else fed[0]
