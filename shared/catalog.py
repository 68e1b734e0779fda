"""What models exist, read from the JSON records shipped beside their weights (no TensorFlow).

The API lists these at ``GET /v1/models`` and validates a job's ``model`` against them; the worker
loads the weights named by the same records. ``auto`` is not a network but a route: it picks the
fidelity network for clean inputs and the strength-conditioned robust network for compressed or noisy
ones (the worker decides per input, ``worker/engine/selection.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from shared.settings import SettingsError

BICUBIC = "bicubic"
RESAMPLED = "resample"  # ``ran.model`` of a job whose size needed no enlargement: no network ran
AUTO = "auto"
AUTO_RECORD = "auto.json"  # auto's evaluation table and description (no weights of its own)
WEIGHTS_SUFFIX = ".weights.h5"  # a network's weights beside its record, ``<name>.weights.h5``


RECORD_SUFFIX = ".json"  # a network's record, ``<name>.json``


def weights_path(models_dir: Path, name: str) -> Path:
    """Where the network ``name``'s weights are in a models folder (its record is ``record_path``)."""
    return Path(models_dir) / f"{name}{WEIGHTS_SUFFIX}"


def record_path(models_dir: Path, name: str) -> Path:
    """Where the network ``name``'s record is in a models folder."""
    return Path(models_dir) / f"{name}{RECORD_SUFFIX}"


def record_beside(weights: Path) -> Path:
    """The record of the weights file ``<name>.weights.h5``: the engine, warm starts and ``upscaler train
    --init-from`` find a network's shape there. Refused for a file not named so (its record cannot be found:
    a replace of the suffix left the weights' own path, read as JSON)."""
    weights = Path(weights)
    if not weights.name.endswith(WEIGHTS_SUFFIX) or weights.name == WEIGHTS_SUFFIX:
        raise ValueError(f"a network's weights are named <name>{WEIGHTS_SUFFIX}, not {weights.name!r}")
    return record_path(weights.parent, weights.name[: -len(WEIGHTS_SUFFIX)])


def read_record_beside(weights: Path) -> dict:
    """The JSON record shipped beside a network's weights (``record_beside``)."""
    return json.loads(record_beside(weights).read_text())


@dataclass(frozen=True)
class ModelInfo:
    name: str
    scales: tuple[int, ...]
    description: str
    arch: str = ""
    conditioned: bool = False  # takes a degradation strength: the job's ``denoise`` applies
    parameters: dict[str, int] = field(default_factory=dict)
    benchmark: dict = field(default_factory=dict)
    degradation: dict | None = None
    routes: dict[str, str] | None = None  # auto only: {"fidelity": name, "robust": name}
    weights: Path | None = None

    @property
    def tiled(self) -> bool:
        """Whether it runs in tiles (every network; bicubic resizes the whole image): such outputs may stream."""
        return self.arch != BICUBIC

    @property
    def accepts_denoise(self) -> bool:
        return self.conditioned or self.routes is not None

    def public(self) -> dict:
        return {"name": self.name, "arch": self.arch, "scales": list(self.scales), "description": self.description,
                "denoise": self.accepts_denoise, "parameters": self.parameters, "benchmark_psnr_y": self.benchmark,
                "training_degradation": self.degradation, "routes": self.routes}


BICUBIC_INFO = ModelInfo(BICUBIC, (2, 3, 4), "Pillow bicubic interpolation: the baseline, no network", arch=BICUBIC)


def write_record(models_dir: Path, name: str, fields: dict, weights: Path | None = None) -> Path:
    """The one writer of a model record: merges ``fields`` into ``<models_dir>/<name>.json``.

    Training export and ``upscaler eval --record`` both go through here, so a record is always whole,
    named, and written atomically (a reader never sees half a file). ``weights``: new weights written beside it
    under another name, moved to ``<name>.weights.h5`` just before the record is: the export replaced the weights
    and then wrote the record, so a worker starting meanwhile (or a crash between them, for good) paired the new
    weights with the old record: its network shape, its benchmark tables for other weights.
    """
    path = record_path(models_dir, name)
    record = json.loads(path.read_text()) if path.exists() else {}
    record.update({"name": name, **fields})
    tmp = path.with_suffix(".json.tmp")
    # allow_nan=False: Python wrote an exact copy's PSNR as Infinity, which no other JSON reader accepts
    tmp.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
    if weights is not None:
        weights.replace(weights_path(models_dir, name))
    tmp.replace(path)
    return path


def _network(record: dict, weights: Path) -> ModelInfo:
    return ModelInfo(
        name=record["name"], scales=tuple(record["network"]["scales"]), description=record.get("description", ""),
        arch=record["arch"], conditioned=bool(record.get("conditioned", False)),
        parameters=record.get("parameters", {}), benchmark=record.get("benchmark", {}),
        degradation=record.get("degradation"), weights=weights,
    )


def load_catalog(models_dir: Path, fidelity: str = "residual_sr", robust: str = "residual_sr_cond") \
        -> dict[str, ModelInfo]:
    """Every ``<name>.json`` with a matching ``<name>.weights.h5`` in ``models_dir``, plus bicubic, plus
    ``auto`` when both of its routes exist (``fidelity`` for clean inputs, ``robust`` for damaged ones).

    Another JSON file there (one with no weights beside it: an operator's notes, a copy of a record) is no model's
    and is not read: each was, and one without a ``name`` stopped the API and the workers at start with a
    traceback, while a copy naming a served model inside replaced that model's record. A record beside weights
    that cannot be read as one is refused in one line naming the file (``SettingsError``)."""
    catalog = {BICUBIC: BICUBIC_INFO}
    auto_record: dict = {}
    for path in sorted(Path(models_dir).glob(f"*{RECORD_SUFFIX}")):
        if path.name == AUTO_RECORD:
            auto_record = json.loads(path.read_text())
            continue
        name = path.name[: -len(RECORD_SUFFIX)]
        weights = weights_path(models_dir, name)  # the engine finds the record the same way (``record_beside``)
        if not weights.exists():
            continue
        try:
            record = json.loads(path.read_text())
            if record.get("name") != name:
                raise ValueError(f"it names the model {record.get('name')!r}, not {name!r} as its file does")
            catalog[name] = _network(record, weights)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SettingsError(f"{path} is not a readable model record ({type(exc).__name__}: {exc})") from exc
    if fidelity in catalog and robust in catalog and catalog[robust].conditioned:
        scales = tuple(s for s in catalog[fidelity].scales if s in catalog[robust].scales)
        catalog[AUTO] = ModelInfo(
            AUTO, scales, auto_record.get("description", "Per input: the fidelity network for clean files "
                                                         "(and JPEGs of quality 97+, WebPs and AVIFs as fine), "
                                                         "the robust network for compressed or noisy ones"),
            arch="route", benchmark=auto_record.get("benchmark", {}), routes={"fidelity": fidelity, "robust": robust})
    return catalog


def catalog_for(settings) -> dict[str, ModelInfo]:
    """The catalog a process with these settings serves (API and worker use the same call).

    Refused at start when it lacks the default model: a typo in a model setting or in the models folder made
    ``auto`` vanish, and every request naming no model failed as if the client had asked for something wrong."""
    catalog = load_catalog(settings.models_dir, settings.auto_fidelity_model, settings.auto_robust_model)
    if settings.default_model not in catalog:
        why = (f"; auto needs UPSCALER_AUTO_FIDELITY_MODEL ({settings.auto_fidelity_model}) and "
               f"UPSCALER_AUTO_ROBUST_MODEL ({settings.auto_robust_model}, a conditioned network) to be there"
               if settings.default_model == AUTO else "")
        raise SettingsError(f"UPSCALER_DEFAULT_MODEL {settings.default_model!r} is not among the models in "
                            f"{settings.models_dir} ({', '.join(sorted(catalog))}){why}")
    return catalog
