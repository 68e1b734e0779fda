"""Benchmark: one network on the CPU inference runtimes that install from PyPI, side by side, on this machine.

The worker's path (Keras on TensorFlow, as ``NetworkEngine`` runs it: in the precision the worker would choose
here, and in float32 where that is another) against ONNX Runtime and OpenVINO, both fed the same network
exported to ONNX by tf2onnx (float32). Every runtime gets the same batch of 256-px tiles and the same thread
count; its output must be within 1e-3 of TensorFlow's float32 (2e-2 for bf16). Prints milliseconds per batch,
achieved GFLOP/s (the network's multiply-adds x 2 / time) and that rate as a share of this machine's float32
matrix multiply rate measured in the same run (TensorFlow's oneDNN matmul: the attainable peak of a tuned GEMM).

The other runtimes are not dependencies of the project (tf2onnx pins an old protobuf): install them beside it,
without touching the environment, and the benchmark finds them:

    pip install --target var/runtimes --no-deps onnxruntime onnx tf2onnx openvino
    python bench/runtimes.py                      # residual_sr x4, batches of 4 tiles of 256 px
    python bench/runtimes.py --scale 2 --batch 8

Not ``openvino-telemetry``: with it, OpenVINO's model conversion reports to Google Analytics; without it, the
built-in stub does nothing, and the benchmark refuses to run OpenVINO while it is importable.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
if (ROOT / "var" / "runtimes").is_dir():
    sys.path.insert(0, str(ROOT / "var" / "runtimes"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def timed(run: Callable[[], object], repeats: int) -> float:
    """Seconds per call, after one warm-up call."""
    run()
    started = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - started) / repeats


def gemm_rate(precision: str = "float32") -> float:
    """GFLOP/s of a 4096^3 matrix multiply in ``precision`` through TensorFlow's oneDNN (AVX-512 where the CPU has
    it; numpy's bundled OpenBLAS reached only about half of that here, so it is not the yardstick). Each runtime is
    measured against the rate of its own precision: a bf16 row against float32's read 111 %."""
    import tensorflow as tf

    a = tf.cast(tf.random.uniform((4096, 4096), dtype=tf.float32), precision)
    return 2 * 4096**3 / timed(lambda: tf.linalg.matmul(a, a).numpy(), 3) / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="residual_sr",
                        help="a network taking the image alone (the conditioned one takes a strength and a grid too)")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    import numpy as np

    from shared.catalog import catalog_for
    from shared.settings import Settings
    from worker.engine.network_engine import NetworkEngine
    from worker.engine.precision import choose_precision, machine_line
    from worker.engine.threads import limit_threads

    limit_threads(args.threads)
    info = catalog_for(Settings(secret_key="bench-secret-0123456789")).get(args.model)
    if info is None or info.weights is None or info.conditioned:
        raise SystemExit(f"--model {args.model!r}: name a network that takes the image alone (residual_sr)")
    worker_precision = choose_precision(Settings.from_env(secret_key="bench").inference_precision)
    engines = {precision: NetworkEngine(info.weights, precision=precision)
               for precision in dict.fromkeys((worker_precision, "float32"))}
    model = engines["float32"]._models[args.scale]
    engine = engines["float32"]
    batch = np.random.default_rng(0).random((args.batch, args.tile, args.tile, 3), dtype=np.float32)
    flops = 2 * engine.config.multiply_adds_per_lr_pixel(args.scale) * batch.shape[0] * args.tile * args.tile
    peaks = {precision: gemm_rate(precision) for precision in engines}
    reference = np.asarray(model.predict_on_batch(batch))
    runs: dict[str, Callable[[], object] | str] = {
        f"tensorflow {precision}{' (the worker' + chr(39) + 's)' if precision == worker_precision else ''}":
            (lambda m=e._models[args.scale]: m.predict_on_batch(batch)) for precision, e in engines.items()}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "network.onnx"
        try:
            import tensorflow as tf
            import tf2onnx

            spec = (tf.TensorSpec([None, None, None, 3], tf.float32, name="lr"),)
            tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=str(onnx_path))
        except ImportError:
            onnx_path = None
        for name, load in (("onnxruntime", _onnxruntime), ("openvino", _openvino)):
            try:
                runs[name] = load(onnx_path, args.threads, batch) if onnx_path else "needs tf2onnx"
            except ImportError as exc:
                runs[name] = str(exc) if "telemetry" in str(exc) else "not installed"
        rates = ", ".join(f"{precision} {rate:.0f}" for precision, rate in peaks.items())
        print(f"{args.model} x{args.scale}, {args.batch} tiles of {args.tile} px per batch, {args.threads} threads on "
              f"{machine_line()}; 4096^3 matmul GFLOP/s: {rates}")
        print("| runtime | max abs diff | ms / batch | GFLOP/s | share of its precision's matmul rate |")
        print("| --- | --- | --- | --- | --- |")
        for name, run in runs.items():
            if isinstance(run, str):
                print(f"| {name} | {run} | - | - | - |")
                continue
            diff = float(np.abs(np.asarray(run(), np.float32).reshape(reference.shape) - reference).max())
            seconds = timed(run, args.repeats)
            rate = flops / seconds / 1e9
            bound = 2e-2 if "bfloat16" in name else 1e-3  # bf16 keeps 8 bits of mantissa
            peak = peaks["bfloat16" if "bfloat16" in name else "float32"]  # ONNX Runtime and OpenVINO: float32
            print(f"| {name} | {diff:.1e}{'' if diff <= bound else ' (too far)'} | {seconds * 1000:.0f} | {rate:.0f} | "
                  f"{rate / peak:.0%} |", flush=True)
    return 0


def _onnxruntime(path: Path, threads: int, batch) -> Callable[[], object]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda: session.run(None, {name: batch})[0]


def _openvino(path: Path, threads: int, batch) -> Callable[[], object]:
    import importlib.util

    import openvino as ov

    if importlib.util.find_spec("openvino_telemetry"):  # it would report the conversion to Google Analytics
        raise ImportError("uninstall openvino-telemetry first")

    compiled = ov.Core().compile_model(ov.convert_model(str(path)), "CPU",
                                       {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"})
    return lambda: compiled(batch)[0]


if __name__ == "__main__":
    sys.exit(main())
