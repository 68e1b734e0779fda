"""How many CPU threads the network may use: one place for workers, training and benchmarks."""

from __future__ import annotations


def limit_threads(threads: int) -> None:
    """Cap TensorFlow's intra-op pool at ``threads`` (0 leaves TensorFlow's default: every core).

    Must run before the first TensorFlow op; other Keras backends are left alone.
    """
    if threads <= 0:
        return
    import keras

    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
