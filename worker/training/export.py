"""Turn a run's checkpoint into the shipped artefacts: float32 weights and their record."""

from __future__ import annotations

import json
from pathlib import Path

import keras

from worker.engine.network import NetworkConfig, build_network, scale_model

MODEL_NAME = "residual_sr"


def export_weights(run_dir: Path, out_dir: Path, name: str = MODEL_NAME) -> Path:
    """Write ``<name>.weights.h5`` and ``<name>.json`` (network config + training record) into out_dir.

    The weights are re-saved from a float32 build of the network, so inference never depends on the
    mixed-precision policy training used.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    config = json.loads((run_dir / "config.json").read_text())
    state = json.loads((run_dir / "state.json").read_text())
    trained = keras.models.load_model(run_dir / "checkpoint.keras", compile=False)
    keras.mixed_precision.set_global_policy("float32")
    network_config = NetworkConfig.from_dict(config["network"])
    model = build_network(network_config)
    model.set_weights(trained.get_weights())
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{name}.weights.h5"
    model.save_weights(weights)
    record_path = out_dir / f"{name}.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    record.update({
        "name": name,
        "network": network_config.to_dict(),
        "parameters": {f"x{s}": scale_model(model, s).count_params()
                       for s in network_config.scales},
        "training": {**{k: v for k, v in config.items() if k != "network"},
                     "data": "../shared/data/train (sun_hays80 + t91) only",
                     "steps_done": state["step"], "minutes": round(state["seconds"] / 60, 1),
                     "set5_psnr_at_end": state.get("last_psnr")},
    })
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return weights

