"""Which floating-point precision runs fastest on this machine, for training and for inference.

bf16 mixed precision halves a training step and cuts an upscale's time by 1.7x on CPUs with native bf16
arithmetic (AVX512_BF16, AMX), and is many times slower where it must be emulated: on an AVX2-only AMD EPYC
a training step took 30 s in bf16 against 2.1 s in float32. So "auto" reads the CPU's flags instead of
assuming. In mixed bf16 the networks keep their tail, skip and pixel shuffle in float32
(``worker.engine.network``), so an upscale's output differs from float32's by a level or two here and there
(one level on 2.6 % of a test crop's pixels). Under JAX on a GPU ``auto`` is bf16 too; under TensorFlow a GPU
keeps float32 unless bf16 is asked for.
"""

from __future__ import annotations

from pathlib import Path

from shared.settings import PRECISIONS as NAMES

NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# A precision's name -> the Keras dtype policy a network's layers are built with.
PRECISIONS = dict(zip(NAMES, ("float32", "mixed_bfloat16"), strict=True))


def _cpuinfo(key: str, cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The first CPU's value for ``key`` in /proc/cpuinfo (None where the file or the key does not exist)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The first CPU's model name ("cpu" where /proc/cpuinfo does not say): what a benchmark's numbers belong to."""
    return _cpuinfo("model name", cpuinfo) or "cpu"


def machine_line() -> str:
    """One line naming what a measurement ran on: the CPU model, its cores and whether it computes bf16 natively
    (printed by ``upscaler eval`` and the benchmarks in ``bench/``; it imports no Keras, so a benchmark's parent
    process does not hand TensorFlow's memory to the children whose peak RSS it measures)."""
    import os

    native = "native bf16" if NATIVE_BF16_FLAGS & cpu_flags() else "no native bf16"
    return f"{cpu_model()}, {os.cpu_count()} cores ({native})"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The feature flags of the first CPU listed (empty where /proc/cpuinfo does not exist)."""
    return set((_cpuinfo("flags", cpuinfo) or "").split())


def choose_precision(requested: str, flags: set[str] | None = None, backend: str | None = None,
                     gpu: bool | None = None) -> str:
    """``float32`` or ``bfloat16``: what was asked, or for ``auto`` what this hardware runs natively (``flags``,
    ``backend`` and whether a GPU is visible are read from the machine unless given)."""
    if requested not in PRECISIONS and requested != "auto":
        raise ValueError(f"unknown precision {requested!r}; known: auto, {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    if backend is None:
        import keras

        backend = keras.backend.backend()
    if backend == "jax":
        if gpu is None:
            import jax

            gpu = jax.default_backend() == "gpu"
        if gpu:
            return "bfloat16"
    elif backend == "tensorflow":
        if gpu is None:
            import tensorflow as tf

            gpu = bool(tf.config.list_physical_devices("GPU"))
        if gpu:
            return "float32"  # a GPU's bf16 speed depends on its generation (native from Ampere): ask for it
    return "bfloat16" if NATIVE_BF16_FLAGS & (cpu_flags() if flags is None else flags) else "float32"


def training_device(backend: str | None = None) -> str:
    """What a run trains on, for its record: the accelerator's name under JAX on a GPU, else the CPU's model."""
    if backend is None:
        import keras

        backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform != "cpu":
            return device.device_kind
    return cpu_model()
