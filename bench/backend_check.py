"""Check the network under any Keras backend: shipped weights load, tiling is exact, a train step runs.

Run it with TensorFlow (the project venv) and with JAX (a venv with `jax[cpu] keras numpy pillow h5py tqdm`,
no TensorFlow), then compare the printed output digests: they agree to float rounding.

    .venv/bin/python bench/backend_check.py
    KERAS_BACKEND=jax /path/to/jax-venv/bin/python bench/backend_check.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> int:
    import argparse

    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    import keras
    import numpy as np

    from worker.engine.archs import get_arch
    from worker.engine.network import NetworkConfig, scale_model
    from worker.engine.tiling import run_tiled

    config = NetworkConfig()
    network = get_arch("residual_sr").build(config)
    network.load_weights(ROOT / "shared" / "weights" / "residual_sr.weights.h5")
    image = (np.random.default_rng(0).random((70, 90, 3)) * 255).astype(np.uint8)
    print(f"backend {keras.backend.backend()}, keras {keras.__version__}")
    for scale in config.scales:
        model = scale_model(network, scale)
        started = time.perf_counter()
        whole = np.asarray(model.predict_on_batch(image[None].astype("float32") / 255))[0]
        seconds = time.perf_counter() - started
        tiled = np.zeros_like(whole)

        def sink(y: int, x: int, core: np.ndarray, out: np.ndarray = tiled) -> None:
            out[y:y + core.shape[0], x:x + core.shape[1]] = core

        run_tiled(lambda b, _at, m=model: np.asarray(m.predict_on_batch(b)), image, scale, 48,
                  config.receptive_radius + 1, 2, sink)
        print(f"x{scale}: output digest {float(whole.mean()):.7f} / {float(whole[10, 10, 0]):.7f}, "
              f"max |tiled - whole| {float(np.abs(tiled - whole).max()):.2e}, first call {seconds:.2f}s")
    network.compile(optimizer="adam", loss=["mean_absolute_error"] * len(config.scales))
    rng = np.random.default_rng(1)
    lrs = [rng.random((2, 12, 12, 3)).astype("float32") for _ in config.scales]
    hrs = [rng.random((2, 12 * s, 12 * s, 3)).astype("float32") for s in config.scales]
    print(f"one training step, loss {float(np.ravel(network.train_on_batch(lrs, hrs))[0]):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
