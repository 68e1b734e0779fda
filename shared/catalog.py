"""What models exist, read from the JSON records shipped beside their weights (no TensorFlow).

The API lists these at ``GET /v1/models`` and validates a job's ``model`` against them; the worker
loads the weights named by the same records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

BICUBIC = "bicubic"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    scales: tuple[int, ...]
    description: str
    parameters: dict[str, int] = field(default_factory=dict)
    benchmark: dict[str, dict[str, float]] = field(default_factory=dict)
    weights: Path | None = None

    def public(self) -> dict:
        return {"name": self.name, "scales": list(self.scales), "description": self.description,
                "parameters": self.parameters, "benchmark_psnr_y": self.benchmark}


BICUBIC_INFO = ModelInfo(BICUBIC, (2, 3, 4), "Pillow bicubic interpolation: the baseline, no network")


def load_catalog(models_dir: Path) -> dict[str, ModelInfo]:
    """Every ``<name>.json`` with a matching ``<name>.weights.h5`` in ``models_dir``, plus bicubic."""
    catalog = {BICUBIC: BICUBIC_INFO}
    for record_path in sorted(Path(models_dir).glob("*.json")):
        record = json.loads(record_path.read_text())
        weights = record_path.with_name(f"{record['name']}.weights.h5")
        if not weights.exists():
            continue
        catalog[record["name"]] = ModelInfo(
            name=record["name"],
            scales=tuple(record["network"]["scales"]),
            description=record.get("description", ""),
            parameters=record.get("parameters", {}),
            benchmark=record.get("benchmark", {}),
            weights=weights,
        )
    return catalog
