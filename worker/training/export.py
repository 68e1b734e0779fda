"""Turn a run's checkpoint into the shipped artefacts: float32 weights and their record."""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
from pathlib import Path

import keras

from shared.catalog import (
    AUTO,
    BICUBIC,
    RECORD_SUFFIX,
    WEIGHTS_SUFFIX,
    catalog_for,
    record_path,
    weights_path,
    write_record,
)
from shared.errors import Refusal
from shared.settings import Settings, SettingsError
from worker.engine.archs import get_arch
from worker.engine.network import scale_model
from worker.training.reparam import plain_weights
from worker.training.warm_start import started_from


def _provenance(run_dir: Path, config: dict, previous: dict) -> dict:
    """The data the weights have seen: this run's files (by the step they were first used), and what the
    network it started from, or its own earlier steps from before this run recorded data, had seen."""
    data = json.loads((run_dir / "data.json").read_text()) if (run_dir / "data.json").exists() else {}
    history = data.get("history", [])
    earlier = previous.get("training", {}).get("data")
    if history and history[0]["from_step"] > 0 and earlier:
        same = earlier.get("before_step", {}).get("step") == history[0]["from_step"]  # this run's own export
        data["before_step"] = earlier["before_step"] if same else {"step": history[0]["from_step"], "data": earlier}
    if "started_from" in config:  # kept when the run began (a record read now may be this run's own export)
        data["started_from"] = config["started_from"]
    elif config.get("init_from") and (parent := started_from(Path(config["init_from"]))):  # a run from before
        data["started_from"] = parent
    return data


class BadModelName(Refusal, ValueError):
    """A name no trained network may take."""


def check_model_name(name: str) -> str:
    """A name a trained network can be served under: a plain file name, and neither the route nor the baseline
    (``--name bicubic`` made the catalog call the network bicubic while the worker ran Pillow; ``--name auto``
    turned the route's record into a network's and emptied its tables)."""
    if name in (AUTO, BICUBIC) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        raise BadModelName(f"a model cannot be named {name!r}: {AUTO!r} and {BICUBIC!r} are built in; use letters, "
                           "digits, '.', '_' and '-'")
    return name


class CatalogWouldBreak(Refusal):
    """An export that would take from the models folder what the platform serves."""


def check_catalog_kept(out_dir: Path, name: str, arch_name: str, network: dict, settings: Settings) -> None:
    """Refuse an export after which ``out_dir`` would serve less than it does: ``--name residual_sr_cond`` for an
    unconditioned run turned ``auto`` off, and the API, the workers and ``upscaler upscale`` then refused to start
    (the default model gone). The catalog is built from the folder's records as they would be, by the catalog's own
    code and checks (``catalog_for``); a folder that serves nothing yet (a new one) has nothing to lose."""
    arch = get_arch(arch_name)
    record = {"arch": arch.name, "conditioned": arch.conditioned, "network": arch.config(network).to_dict()}
    try:
        before = catalog_for(dataclasses.replace(settings, models_dir=out_dir))
    except (SettingsError, OSError, ValueError):  # nothing served there yet, or not readable as a models folder
        return
    with tempfile.TemporaryDirectory(prefix="upscaler-export-check-") as folder:
        for path in Path(out_dir).glob(f"*{RECORD_SUFFIX}"):
            (Path(folder) / path.name).write_bytes(path.read_bytes())
        for path in [*Path(out_dir).glob(f"*{WEIGHTS_SUFFIX}"), weights_path(out_dir, name)]:
            (Path(folder) / path.name).touch()  # the catalog asks only that weights are there
        previous = record_path(folder, name)
        merged = {**(json.loads(previous.read_text()) if previous.exists() else {}), **record, "name": name}
        previous.write_text(json.dumps(merged))
        try:
            lost = sorted(set(before) - set(catalog_for(dataclasses.replace(settings, models_dir=Path(folder)))))
            why = "auto needs UPSCALER_AUTO_FIDELITY_MODEL and a conditioned UPSCALER_AUTO_ROBUST_MODEL"
        except SettingsError as exc:  # the default model gone: every process would refuse to start
            lost, why = [settings.default_model], str(exc).replace(folder, str(out_dir))
    if lost:
        kind = "a conditioned" if arch.conditioned else "an unconditioned"
        raise CatalogWouldBreak(f"exporting {kind} {arch.name} network as {name!r} into {out_dir} would take "
                                f"{', '.join(lost)} from the models it serves ({why}); nothing was written: export "
                                "it under another --name")


def export_weights(run_dir: Path, out_dir: Path, name: str | None = None, settings: Settings | None = None) -> Path:
    """Write ``<name>.weights.h5`` and ``<name>.json`` (arch, network config, training record) into out_dir, unless
    that would take a model from what the folder serves to ``settings``' default model and ``auto`` route (the
    platform's defaults when not given): ``check_catalog_kept``.

    The weights are re-saved from a float32 build of the network, so inference never depends on the
    mixed-precision policy training used, nor on how its convs were parameterised in training.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    config = json.loads((run_dir / "config.json").read_text())
    state = json.loads((run_dir / "state.json").read_text())
    arch = get_arch(config.get("arch", "residual_sr"))
    name = check_model_name(name or arch.name)
    check_catalog_kept(out_dir, name, arch.name, config["network"], settings or Settings())
    network_config = arch.config(config["network"])
    trained = keras.models.load_model(run_dir / "checkpoint.keras", compile=False)
    model = arch.build(network_config)
    trained_layers = {layer.name: layer for layer in trained.layers}
    for layer in model.layers:
        if layer.weights:  # by name: a run trained with over-parameterised convs ships their fused kernels
            layer.set_weights(plain_weights(trained_layers[layer.name]))
    training = {k: v for k, v in config.items() if k not in ("network", "arch", "degradation")}
    record = record_path(out_dir, name)
    previous = json.loads(record.read_text()) if record.exists() else {}
    fields = {
        "arch": arch.name,
        "conditioned": arch.conditioned,
        "description": f"{arch.description} ({network_config.shape_words}, trained here)",
        "network": network_config.to_dict(),
        "parameters": {f"x{s}": scale_model(model, s).count_params() for s in network_config.scales},
        "degradation": config.get("degradation"),
        "benchmark": {},  # new weights: earlier measurements no longer apply (upscaler eval --record)
        "training": {**training, "data": _provenance(run_dir, config, previous), "steps_done": state["step"],
                     "minutes": round(state["seconds"] / 60, 1), "set5_psnr_at_end": state.get("last_psnr")},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    # written under another name, then moved in together with its record (``write_record``): a worker loading
    # the folder meanwhile reads the old pair or the new one
    partial = out_dir / f".{name}.partial{WEIGHTS_SUFFIX}"
    try:
        model.save_weights(partial)
        write_record(out_dir, name, fields, weights=partial)
    finally:  # stopped mid-write (Ctrl-C, SIGTERM): no partial file stays
        partial.unlink(missing_ok=True)
    return weights_path(out_dir, name)
