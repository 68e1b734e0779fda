"""Check every shipped network under any Keras backend: its weights load, tiling is exact, a train step runs.

Each network is built from its own record (``shared/weights/<name>.json``); a conditioned one is told a strength
and a JPEG grid, so the layers only it has (strength planes, grid planes) are checked too.

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

    from worker.engine.base import Condition, grid_input
    from worker.engine.network import feed
    from worker.engine.network_engine import NetworkEngine
    from worker.engine.tiling import run_tiled

    image = (np.random.default_rng(0).random((70, 90, 3)) * 255).astype(np.uint8)
    print(f"backend {keras.backend.backend()}, keras {keras.__version__}")
    for weights in sorted((ROOT / "shared" / "weights").glob("*.weights.h5")):
        engine = NetworkEngine(weights, tile_size=48, precision="float32")
        condition = Condition(strength=0.5, jpeg_grid=(3, 5)) if engine.conditioned else Condition()
        print(f"{engine.name} ({'told strength 0.5 and grid (3, 5)' if engine.conditioned else 'plain'})")
        for scale in engine.scales:
            started = time.perf_counter()
            whole = engine.predict(scale, image[None].astype("float32") / 255, condition)[0]
            seconds = time.perf_counter() - started
            tiled = np.zeros_like(whole)

            def sink(y: int, x: int, core: np.ndarray, out: np.ndarray = tiled) -> None:
                out[y:y + core.shape[0], x:x + core.shape[1]] = core

            run_tiled(lambda b, at, s=scale, e=engine, c=condition: e.predict(s, b, c, at), image, scale,
                      engine.tile_size, engine.margin, 2, sink, align=engine.align)
            print(f"  x{scale}: output digest {float(whole.mean()):.7f} / {float(whole[10, 10, 0]):.7f}, "
                  f"max |tiled - whole| {float(np.abs(tiled - whole).max()):.2e}, first call {seconds:.2f}s")
        network = engine.network
        network.compile(optimizer="adam", loss=["mean_absolute_error"] * len(engine.scales))
        rng = np.random.default_rng(1)
        lrs = {s: rng.random((2, 12, 12, 3)).astype("float32") for s in engine.scales}
        strengths = {s: np.full((2, 1), 0.5, np.float32) for s in engine.scales}
        grids = {s: np.array([grid_input((3, 5))] * 2, np.float32) for s in engine.scales}
        hrs = [rng.random((2, 12 * s, 12 * s, 3)).astype("float32") for s in engine.scales]
        loss = network.train_on_batch(feed(network, lrs, strengths, grids), hrs)
        print(f"  one training step, loss {float(np.ravel(loss)[0]):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
