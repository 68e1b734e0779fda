"""Start a run from a shipped network's weights (fine-tuning), even across architectures of one family.

Weights are matched by layer name. A kernel that gained input channels (the conditioned network's head
sees the image plus a strength plane) gets the old kernel in its leading channels and zeros in the new
ones, and a residual block the source lacks (a deeper network) starts with its closing conv at zero, an
identity: either way, at step 0 the new network computes exactly what the old one did.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from shared.catalog import read_record_beside
from worker.engine.archs import get_arch
from worker.engine.network import closes_residual_branch
from worker.training.reparam import plain_weights, set_plain_weights


def load_shipped(weights: Path) -> tuple[keras.Model, dict]:
    """A shipped network (``<name>.weights.h5`` beside ``<name>.json``) and its record, in float32."""
    record = read_record_beside(weights)
    arch = get_arch(record.get("arch", "residual_sr"))
    model = arch.build(arch.config(record["network"]))
    model.load_weights(weights)
    return model, record


def started_from(weights: Path) -> dict | None:
    """The name and training data of the shipped network at ``weights`` (what a run warm-started from it had
    seen before its own steps), or None where it has no record."""
    try:
        parent = read_record_beside(weights)
    except FileNotFoundError:
        return None
    return {"name": parent.get("name"), "data": parent.get("training", {}).get("data")}


def _fit(old: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if old.shape == shape:
        return old
    if old.ndim == 4 and old.shape[:2] == shape[:2] and old.shape[3] == shape[3] and old.shape[2] < shape[2]:
        grown = np.zeros(shape, old.dtype)
        grown[:, :, : old.shape[2]] = old
        return grown
    raise ValueError(f"cannot fit weights of shape {old.shape} into {shape}")


def warm_start(model: keras.Model, weights: Path) -> list[str]:
    """Copy every same-named layer's weights from the shipped network into ``model``; returns the names."""
    source, _ = load_shipped(weights)
    by_name = {layer.name: layer for layer in source.layers if layer.weights}
    copied = []
    for layer in model.layers:
        old = by_name.get(layer.name)
        if not layer.weights:
            continue
        # in plain terms: a layer trained as branches (reparam) takes the plain conv's kernel and bias
        shapes = [tuple(w.shape) for w in plain_weights(layer)]
        if old is None:
            if closes_residual_branch(layer.name):
                set_plain_weights(layer, [np.zeros(shape, "float32") for shape in shapes])
            continue
        set_plain_weights(layer, [_fit(np.asarray(o), shape) for o, shape in zip(old.get_weights(), shapes,
                                                                                  strict=True)])
        copied.append(layer.name)
    return copied
