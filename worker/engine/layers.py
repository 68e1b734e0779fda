"""Custom Keras layers of the super-resolution network.

They are registered serialisable layers written with ``keras.ops`` only, so the same saved model
loads safely (no ``Lambda``) and runs unchanged on the TensorFlow and JAX backends.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def cubic_weight(distance: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel (a=-0.5, as Pillow and MATLAB use)."""
    x = np.abs(distance)
    near = (a + 2) * x**3 - (a + 3) * x**2 + 1
    far = a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def bicubic_phase_kernel(scale: int, channels: int = 3) -> np.ndarray:
    """A fixed 5x5 convolution whose ``scale**2`` output phases are bicubic upsampling.

    Output channel ``(i * scale + j) * channels + c`` holds the bicubic estimate of the HR pixel at
    sub-position (i, j) of channel c, which is exactly the layout ``PixelShuffle`` expects. Doing the
    bicubic skip as a convolution (instead of an image-resize op) keeps it cheap, tile-exact, and
    compilable on every backend.
    """
    taps = np.arange(-2, 3, dtype=np.float64)
    per_phase = []
    for phase in range(scale):
        offset = (phase + 0.5) / scale - 0.5
        w = cubic_weight(taps - offset)
        per_phase.append(w / w.sum())
    kernel = np.zeros((5, 5, channels, scale * scale * channels), dtype=np.float32)
    for i in range(scale):
        for j in range(scale):
            weights_2d = np.outer(per_phase[i], per_phase[j])
            for c in range(channels):
                kernel[:, :, c, (i * scale + j) * channels + c] = weights_2d
    return kernel


@keras.saving.register_keras_serializable(package="upscaler")
class PixelShuffle(keras.layers.Layer):
    """Depth-to-space (sub-pixel convolution, Shi et al. 2016) for NHWC tensors."""

    def __init__(self, scale: int, **kwargs):
        super().__init__(**kwargs)
        self.scale = int(scale)

    def call(self, x):
        s = self.scale
        shape = ops.shape(x)
        batch, height, width, depth = shape[0], shape[1], shape[2], shape[3]
        channels = depth // (s * s)
        x = ops.reshape(x, (batch, height, width, s, s, channels))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (batch, height * s, width * s, channels))

    def compute_output_shape(self, input_shape):
        b, h, w, d = input_shape
        s = self.scale
        return (b, None if h is None else h * s, None if w is None else w * s, d // (s * s))

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="upscaler")
class PixelUnshuffle(keras.layers.Layer):
    """Space-to-depth by 2 for NHWC tensors of any size: an odd side is first mirrored by one pixel.

    The mirrored pixel sits on the bottom/right edge only, so cells always start at even coordinates of the
    input: a window starting at an even image coordinate sees the cells the whole image has (tiling aligns
    its windows so, ``NetworkConfig.alignment``).
    """

    def call(self, x):
        shape = ops.shape(x)
        batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
        x = ops.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)), mode="symmetric")
        half_h, half_w = (height + 1) // 2, (width + 1) // 2
        x = x[:, : 2 * half_h, : 2 * half_w]
        x = ops.reshape(x, (batch, half_h, 2, half_w, 2, channels))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (batch, half_h, half_w, 4 * channels))

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, None if h is None else (h + 1) // 2, None if w is None else (w + 1) // 2, 4 * c)


@keras.saving.register_keras_serializable(package="upscaler")
class CropLike(keras.layers.Layer):
    """Crops the first input to the second's height and width (undoes ``PixelUnshuffle``'s odd-side padding)."""

    def call(self, inputs):
        x, like = inputs
        shape = ops.shape(like)
        return x[:, : shape[1], : shape[2]]

    def compute_output_shape(self, input_shapes):
        (b, _, _, c), (_, h, w, _) = input_shapes
        return (b, h, w, c)


@keras.saving.register_keras_serializable(package="upscaler")
class BicubicPhases(keras.layers.Layer):
    """The global skip: bicubic upsampling expressed as ``scale**2`` phase channels (not trainable).

    The borders are padded by edge replication so the skip does not darken the image edge.
    """

    def __init__(self, scale: int, **kwargs):
        kwargs["trainable"] = False
        super().__init__(**kwargs)
        self.scale = int(scale)
        self._kernel = bicubic_phase_kernel(self.scale)

    def call(self, x):
        x = ops.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="symmetric")
        kernel = ops.convert_to_tensor(self._kernel, dtype=x.dtype)
        return ops.conv(x, kernel, strides=1, padding="valid")

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        return (b, h, w, 3 * self.scale * self.scale)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="upscaler")
class StrengthPlane(keras.layers.Layer):
    """Concatenates a constant plane holding each sample's degradation strength to its image (SRMD-style).

    A constant plane keeps tiled inference exact: every window of an image sees the same value.
    """

    def call(self, inputs):
        image, strength = inputs
        plane = ops.ones_like(image[..., :1]) * ops.reshape(ops.cast(strength, image.dtype), (-1, 1, 1, 1))
        return ops.concatenate([image, plane], axis=-1)

    def compute_output_shape(self, input_shapes):
        b, h, w, c = input_shapes[0]
        return (b, h, w, c + 1)


@keras.saving.register_keras_serializable(package="upscaler")
class BlockGridPlanes(keras.layers.Layer):
    """Concatenates one-hot planes telling each pixel where it sits in the JPEG block grid.

    A small network cannot tell a block edge from an image edge by looking: told the grid, it can undo
    the blocking exactly where the encoder made it. Per sample, ``grid`` is ``(present, row, col)``:
    whether the input has a block grid at all (a JPEG) and the position inside its block of the window's
    top-left pixel. Positions come from image coordinates, so every tile of an image sees the planes the
    whole image would: tiled inference stays exact.
    """

    def __init__(self, period: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.period = int(period)

    def _one_hot(self, index, offset):
        position = index + ops.reshape(offset, (-1, 1, 1, 1))
        position = position - self.period * ops.floor(position / self.period)
        return ops.cast(ops.equal(position, ops.arange(self.period, dtype="float32")), self.compute_dtype)

    def call(self, inputs):
        image, grid = inputs
        grid = ops.cast(grid, "float32")
        ones = ops.ones_like(image[..., :1], dtype="float32")
        rows = self._one_hot(ops.cumsum(ones, axis=1) - 1.0, grid[:, 1])
        cols = self._one_hot(ops.cumsum(ones, axis=2) - 1.0, grid[:, 2])
        present = ops.reshape(ops.cast(grid[:, 0], self.compute_dtype), (-1, 1, 1, 1))
        return ops.concatenate([ops.cast(image, self.compute_dtype), rows * present, cols * present], axis=-1)

    def compute_output_shape(self, input_shapes):
        b, h, w, c = input_shapes[0]
        return (b, h, w, c + 2 * self.period)

    def get_config(self):
        return {**super().get_config(), "period": self.period}
