"""The training loop: resumable checkpoints, validation PSNR, metrics CSV and plot, weight export.

A run folder holds ``config.json`` (what was asked, and the learning-rate schedule in force), ``data.json``
(the training files actually used), ``checkpoint.keras`` (model and optimizer state, so the schedule's position
and Adam's moments resume exactly), ``state.json`` (step, wall time, last PSNR), ``metrics.csv`` and
``psnr.png``. Running the same command again resumes from the checkpoint; the network it trains (architecture,
shape, conv kind) is the run's and cannot change, its precision may. The patch stream is drawn afresh on a
resume (seeded by the run's seed and the step), not continued draw for draw.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from shared.errors import Refusal
from worker.engine.archs import get_arch
from worker.engine.base import grid_input
from worker.engine.network import NetworkConfig, feed, scale_model
from worker.engine.precision import PRECISIONS, training_device
from worker.engine.strength import jpeg_strength
from worker.evaluation import load_benchmark, score
from worker.imaging import LUMA_601
from worker.training.degradation import DegradationConfig
from worker.training.patches import (
    SamplerSpec,
    batch_stream,
    find_images,
    images_per_scale,
    refuse_benchmark_images,
    used_files,
)
from worker.training.reparam import CONV_FACTORIES
from worker.training.warm_start import started_from, warm_start

CHROMA_WEIGHT = 0.25


@keras.saving.register_keras_serializable(package="upscaler")
def luma_weighted_l1(y_true, y_pred):
    """L1 on BT.601 luma plus a quarter of it on the two colour differences.

    Why: quality is judged on luma (the eye resolves detail there; Y-PSNR measures only it), while a JPEG's
    4:2:0 chroma is damaged beyond repair at low qualities: a plain RGB L1 spends a small network's capacity
    on colour errors it cannot fix.
    """
    from keras import ops

    diff = y_true - y_pred
    luma = ops.sum(diff * ops.convert_to_tensor(LUMA_601, diff.dtype), axis=-1)
    blue, red = diff[..., 2] - luma, diff[..., 0] - luma
    return ops.abs(luma) + CHROMA_WEIGHT * 0.5 * (ops.abs(blue) + ops.abs(red))


LOSSES = {"l1": "mean_absolute_error", "luma_l1": luma_weighted_l1}


def write_json(path: Path, data: dict) -> None:
    """Write a run folder's JSON whole or not at all: a session killed mid-write left a truncated state.json or
    config.json, and the run could no longer be resumed."""
    tmp = path.with_name(f"{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def _losses(model: keras.Model, loss: str) -> list:
    """The same loss (a ``LOSSES`` key) for every scale's output."""
    return [LOSSES[loss]] * len(model.outputs)


def saved_config(run_dir: Path) -> dict | None:
    """A run folder's ``config.json`` (None for a new run): a resume takes what its command does not say from it."""
    path = Path(run_dir) / "config.json"
    return json.loads(path.read_text()) if (Path(run_dir) / "checkpoint.keras").exists() and path.exists() else None


class RunMismatch(Refusal, ValueError):
    """A resume asked for another network than the run folder trains (its weights fit only its own)."""


VALIDATION_JPEG_QUALITY = 75
# What a run's weights and optimizer state are shaped by: a resume must ask for the same.
FIXED_OPTIONS = ("arch", "network", "convs")



@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; saved in the run folder."""

    arch: str = "residual_sr"
    network: NetworkConfig = field(default_factory=NetworkConfig)
    degradation: DegradationConfig | None = None
    init_from: str | None = None  # weights file of a shipped model to start from (fine-tuning)
    steps: int = 18000
    batch: int = 16
    lr_patch: int = 48
    learning_rate: float = 1e-3
    warmup_steps: int = 500
    seed: int = 1234
    precision: str = "float32"  # a PRECISIONS key; the CLI picks it from the CPU (worker.engine.precision)
    loss: str = "l1"  # a LOSSES key
    convs: str = "plain"  # a CONV_FACTORIES key: "rep" trains each 3x3 conv as fused branches (reparam.py)
    checkpoint_minutes: float = 5.0
    validate_every: int = 1000
    data_workers: int = 0  # processes sampling patches (0: one thread); a GPU needs several
    # Wall-clock budget of a new run: the cosine decay is fitted at the end of the warm-up, from the measured
    # step rate, so the schedule anneals as the time is spent (``steps`` becomes the fitted count).
    time_limit_minutes: float | None = None

    def __post_init__(self) -> None:
        if self.convs not in CONV_FACTORIES:
            raise ValueError(f"unknown convs {self.convs!r}; known: {', '.join(CONV_FACTORIES)}")

    def to_dict(self) -> dict:
        return {**asdict(self), "network": self.network.to_dict(),
                "degradation": self.degradation.to_dict() if self.degradation else None}

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """A run folder's config (its extra entries, such as restarts and the schedule, are left out)."""
        values = {k: v for k, v in data.items() if k in {f.name for f in fields(cls)}}
        values["network"] = NetworkConfig.from_dict(data["network"])
        values["degradation"] = DegradationConfig.from_dict(data["degradation"]) if data.get("degradation") else None
        return cls(**values)


def config_for(run_dir: Path, network: dict | None = None, **options) -> TrainConfig:
    """What a command trains with: for a new run the defaults, for a resume the run's own config, either under
    the options the command gave (``network`` holds ``NetworkConfig`` fields). So the same command, or one naming
    only --steps, goes on with the run as it was: its loss, mix, peak and warm-up (an extension restarted at the
    1e-3 default and a built-in 200-step warm-up). A different network is refused when the run resumes."""
    saved = saved_config(run_dir)
    base = TrainConfig.from_dict(saved) if saved else TrainConfig()
    return replace(base, network=replace(base.network, **(network or {})), **options)


@keras.saving.register_keras_serializable(package="upscaler")
class RestartedCosine(keras.optimizers.schedules.LearningRateSchedule):
    """A new warm-up + cosine cycle that starts at ``start_step``: how a finished run is extended."""

    def __init__(self, peak: float, start_step: int, total_steps: int, warmup_steps: int = 200, floor: float = 0.01):
        self.peak, self.start_step, self.total_steps = peak, start_step, total_steps
        self.warmup_steps, self.floor = warmup_steps, floor

    def __call__(self, step):
        from keras import ops

        s = ops.cast(step, "float32") - self.start_step
        warm = self.peak * s / max(self.warmup_steps, 1)
        progress = ops.clip((s - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1), 0.0, 1.0)
        cosine = self.peak * (self.floor + (1 - self.floor) * 0.5 * (1 + ops.cos(np.pi * progress)))
        return ops.where(s < self.warmup_steps, warm, cosine)

    def get_config(self) -> dict:
        return {"peak": self.peak, "start_step": self.start_step, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "floor": self.floor}


def _compile(model: keras.Model, config: TrainConfig) -> None:
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=max(config.steps - config.warmup_steps, 1),
        alpha=0.01,
        warmup_target=config.learning_rate,
        warmup_steps=config.warmup_steps,
    )
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=_losses(model, config.loss))


def predict_whole(model: keras.Model, scale: int, lr: np.ndarray, strength: float = 0.0,
                  grid: tuple[int, int] | None = None) -> np.ndarray:
    """Run a single-scale model on one whole uint8 image (validation sized) and return uint8; ``grid`` is
    where its JPEG block grid starts (None: not a JPEG)."""
    batch = lr[None].astype(np.float32) / 255.0
    inputs = feed(model, {scale: batch}, {scale: np.array([[strength]], np.float32)},
                  {scale: np.array([grid_input(grid)], np.float32)})
    out = np.asarray(model(inputs, training=False), dtype=np.float32)[0]
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


def _per_folder(files: list[Path]) -> dict[str, int]:
    folders: dict[str, int] = {}
    for path in files:
        folders[path.parent.name] = folders.get(path.parent.name, 0) + 1
    return folders


# Beside a data folder's ``train/``: how its images were carried when they are copies of the originals (written by
# ``scripts/device/pack_data.py`` from what it did and measured), so a run's records say so without a hand-typed line
CARRIED_NOTE = "carried.json"


def carried_as(train_dirs: list[Path]) -> str | None:
    """The ``CARRIED_NOTE`` of the data folders holding ``train_dirs``, None for the originals."""
    notes = [json.loads(path.read_text())["carried_as"] for path in dict.fromkeys(d.parent / CARRIED_NOTE
                                                                                  for d in train_dirs)
             if path.is_file()]
    return "; ".join(notes) or None


def data_provenance(files: list[Path], used: list[Path] | None = None, min_side: int | None = None,
                    per_scale: dict[str, int] | None = None, carried: str | None = None) -> dict:
    """What the run really trained on: image counts per folder and a digest of the file list, and of those the
    images large enough to give a patch (``used``: at the smallest scale, ``min_side``; ``per_scale`` how many
    each scale samples; the others are never sampled).

    The digest is over folder/stem, without the suffix: a copy made to carry the data to a GPU machine (in
    another format, see ``docs/model.md``) names the same images and gives the same digest.
    """
    digest = hashlib.sha256("\n".join(f"{p.parent.name}/{p.stem}" for p in files).encode()).hexdigest()
    found = {"folders": _per_folder(files), "images": len(files), "file_list_sha256": digest,
             "digest_of": "folder/stem", **({"carried_as": carried} if carried else {})}
    if used is None:
        return found
    return {**found, "used": {"folders": _per_folder(used), "images": len(used), "min_side": min_side,
                              "images_per_scale": per_scale}}


class Trainer:
    """Owns one run folder; ``run()`` trains until ``config.steps`` and can be called again to resume."""

    def __init__(self, run_dir: Path, config: TrainConfig, train_dirs: list[Path], validation_dir: Path):
        self.run_dir = Path(run_dir)
        self.config = config
        self.train_dirs = train_dirs
        self.validation_dir = Path(validation_dir)
        self.validation_images = load_benchmark(validation_dir)
        self.checkpoint = self.run_dir / "checkpoint.keras"
        self.state_file = self.run_dir / "state.json"

    def _record_data(self, files: list[Path], spec: SamplerSpec, step: int) -> None:
        """``data.json``: the files this run finds and samples now, and from which step each set was used."""
        path = self.run_dir / "data.json"
        current = data_provenance(files, used_files(files, spec.min_side), spec.min_side,
                                  images_per_scale(files, spec.scales, spec.lr_patch), carried_as(self.train_dirs))
        saved = json.loads(path.read_text()) if path.exists() else {}
        history = saved.get("history") or ([{**{k: v for k, v in saved.items() if k != "history"}, "from_step": 0}]
                                           if saved else [])
        last = history[-1] if history else {}
        # an entry from before ``used`` was recorded is not a change of data
        if not history or any(k in last and last[k] != current[k] for k in ("file_list_sha256", "used")):
            history.append({**current, "from_step": step})
        write_json(path, {**current, "history": history})

    def _record_device(self, step: int) -> None:
        """``config.json``'s ``trained_on``: the backend and device of every session that changed them."""
        path = self.run_dir / "config.json"
        saved = json.loads(path.read_text())
        current = {"backend": keras.backend.backend(), "device": training_device()}
        sessions = saved.setdefault("trained_on", [])
        if not sessions or {k: sessions[-1][k] for k in current} != current:
            sessions.append({"from_step": step, **current})
            write_json(path, saved)

    def _check_resumable(self, saved: dict) -> None:
        asked = self.config.to_dict()
        run = {"arch": saved.get("arch", "residual_sr"), "network": NetworkConfig.from_dict(saved["network"]).to_dict(),
               "convs": saved.get("convs", "plain")}  # fields added since a run began take their defaults
        differ = [f"{name}: the run's {run[name]!r}, asked {asked[name]!r}" for name in FIXED_OPTIONS
                  if asked[name] != run[name]]
        if differ:
            raise RunMismatch(f"{self.run_dir} trains another network ({'; '.join(differ)}): resume it as it was "
                              "started, or give a new --run-dir")

    def _load_or_build(self) -> tuple[keras.Model, dict]:
        if self.checkpoint.exists():
            state = json.loads(self.state_file.read_text())
            saved = json.loads((self.run_dir / "config.json").read_text())
            self._check_resumable(saved)
            if self.config.time_limit_minutes and "fitted_at_step" in saved:
                # resuming a time-fitted run goes on with its fitted schedule, not the command's plan
                self.config = replace(self.config, steps=saved["steps"])
            model = keras.models.load_model(self.checkpoint)
            # the checkpoint's own step: it is replaced before state.json is written, so a session killed between
            # the two left state.json a save behind (the schedule, the patch seed and the step count disagreed)
            state["step"] = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
            if "schedule" in saved:  # config.json is written first: a session killed before its next save
                model.optimizer.learning_rate = RestartedCosine(**saved["schedule"])  # still resumes this schedule
            if self.config.precision != saved.get("precision", "float32"):
                model = self._in_precision(model)
            self._trim_metrics(state["step"])
            self._maybe_extend(model, state)
            return model, state
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for leftover in ("metrics.csv", "data.json", "state.json", "psnr.png"):
            # of a session killed before its first checkpoint: this run starts over, so do they (its rows were
            # appended to, out of order, and plotted with this run's)
            (self.run_dir / leftover).unlink(missing_ok=True)
        write_json(self.run_dir / "config.json", {**self.config.to_dict(), **self._parent_data()})
        keras.utils.set_random_seed(self.config.seed)
        model = get_arch(self.config.arch).build(self.config.network, PRECISIONS[self.config.precision],
                                                 conv=CONV_FACTORIES[self.config.convs])
        if self.config.init_from:
            warm_start(model, Path(self.config.init_from))
        _compile(model, self.config)
        return model, {"step": 0, "seconds": 0.0}

    def _parent_data(self) -> dict:
        """What the network a new run starts from had seen (its record's data), kept in the run folder: read at
        export time instead, it was the record the run's own earlier export had overwritten."""
        parent = started_from(Path(self.config.init_from)) if self.config.init_from else None
        return {"started_from": parent} if parent else {}

    def _in_precision(self, model: keras.Model) -> keras.Model:
        """The checkpoint's network rebuilt in the asked precision, its weights, schedule and Adam state carried
        over (a bf16 run resumed on a CPU without native bf16, where a bf16 step is 15x slower)."""
        rebuilt = get_arch(self.config.arch).build(self.config.network, PRECISIONS[self.config.precision],
                                                   conv=CONV_FACTORIES[self.config.convs])
        rebuilt.set_weights(model.get_weights())
        optimizer = type(model.optimizer).from_config(model.optimizer.get_config())  # its schedule and settings
        rebuilt.compile(optimizer=optimizer, loss=_losses(rebuilt, self.config.loss))
        rebuilt.optimizer.build(rebuilt.trainable_variables)
        for target, source in zip(rebuilt.optimizer.variables, model.optimizer.variables, strict=True):
            target.assign(keras.ops.cast(source, target.dtype))
        return rebuilt

    def _trim_metrics(self, step: int) -> None:
        """Drop metric rows logged after the checkpoint a resume starts from: that session's later steps are
        trained again, and their rows would appear twice."""
        path = self.run_dir / "metrics.csv"
        if not path.exists():
            return
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            columns, rows = reader.fieldnames or [], [r for r in reader if int(r["step"]) <= step]
        self._write_metrics(columns, rows)

    def _write_metrics(self, columns: list[str], rows: list[dict]) -> None:
        tmp = self.run_dir / "metrics.csv.tmp"
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(self.run_dir / "metrics.csv")

    def _maybe_extend(self, model: keras.Model, state: dict) -> None:
        """Asked for more steps than planned (finished or not): a new warm-up + cosine cycle from here.

        A changed degradation mix or loss is recorded either way, so the record lists everything the weights saw.
        """
        saved_path = self.run_dir / "config.json"
        saved = json.loads(saved_path.read_text())
        # compared as JSON: the saved mix holds lists where the config holds tuples
        degradation = json.loads(json.dumps(self.config.degradation.to_dict())) if self.config.degradation else None
        changed = degradation != saved.get("degradation")
        loss_changed = self.config.loss != saved.get("loss", "l1")
        precision_changed = self.config.precision != saved.get("precision", "float32")
        extend = self.config.steps > saved["steps"]
        if not (extend or changed or loss_changed or precision_changed):
            return
        entry: dict = {"at_step": state["step"]}
        if extend:
            schedule = RestartedCosine(self.config.learning_rate, state["step"], self.config.steps - state["step"],
                                       self.config.warmup_steps)
            model.optimizer.learning_rate = schedule
            entry.update(peak=self.config.learning_rate, warmup_steps=self.config.warmup_steps,
                         until=self.config.steps)
            saved.update(steps=self.config.steps, schedule=schedule.get_config())
        if precision_changed:  # the model was rebuilt in it (_in_precision)
            entry["precision_before"] = saved.get("precision", "float32")
            saved["precision"] = self.config.precision
        if changed:
            entry["degradation_before"] = saved.get("degradation")
            saved["degradation"] = degradation
        if loss_changed:  # the same optimizer (its step, moments and schedule) goes on with the new loss
            entry["loss_before"] = saved.get("loss", "l1")
            saved["loss"] = self.config.loss
            model.compile(optimizer=model.optimizer, loss=_losses(model, self.config.loss))
        saved.setdefault("restarts", []).append(entry)
        write_json(saved_path, saved)

    def validate(self, model: keras.Model) -> dict[str, float]:
        """Set5 Y-PSNR per scale (validation only: never a training image), clean and, when the run
        learns degradations, from JPEG files of quality 75 with the strength that quality maps to."""
        protocols = {"set5": (None, 0.0)}
        if self.config.degradation:
            protocols[f"set5_q{VALIDATION_JPEG_QUALITY}"] = (VALIDATION_JPEG_QUALITY,
                                                            jpeg_strength(VALIDATION_JPEG_QUALITY))
        result = {}
        for scale in self.config.network.scales:
            single = scale_model(model, scale)
            for label, (quality, strength) in protocols.items():
                grid = (0, 0) if quality else None  # a JPEG file's grid starts at its top-left pixel
                result[f"{label}_x{scale}"] = score(
                    lambda lr, s, m=single, st=strength, g=grid: predict_whole(m, s, lr, st, g),
                    self.validation_images, scale, with_ssim=False, jpeg_quality=quality).psnr
        return result

    def _save(self, model: keras.Model, state: dict) -> None:
        tmp = self.checkpoint.with_suffix(".tmp.keras")
        model.save(tmp)
        tmp.replace(self.checkpoint)
        write_json(self.state_file, state)
        self._plot()

    def _log(self, row: dict) -> None:
        """Append a row; a row with columns the file lacks (a resume that turned on --degrade or other scales)
        rewrites it under the union of both (rows written under another header went out of line)."""
        path = self.run_dir / "metrics.csv"
        if not path.exists():
            self._write_metrics(list(row), [row])
            return
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            columns, rows = reader.fieldnames or [], list(reader)
        if set(row) <= set(columns):
            with path.open("a", newline="") as fh:
                csv.DictWriter(fh, fieldnames=columns, restval="").writerow(row)
            return
        self._write_metrics([*columns, *(c for c in row if c not in columns)], [*rows, row])

    def _plot(self) -> None:
        path = self.run_dir / "metrics.csv"
        if not path.exists():
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = list(csv.DictReader(path.open()))
        fig, ax = plt.subplots(figsize=(7, 4))
        for column in (c for c in rows[0] if c.startswith("set5")):
            measured = [r for r in rows if r.get(column)]  # a column a later session added is blank before it
            ax.plot([int(r["step"]) for r in measured], [float(r[column]) for r in measured], label=column)
        ax.set_xlabel("step")
        ax.set_ylabel("Set5 Y-PSNR (dB)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(self.run_dir / "psnr.png", dpi=100)
        plt.close(fig)

    def _fit_schedule(self, model: keras.Model, state: dict, seconds_per_step: float, seconds_left: float) -> None:
        """Fix the cosine decay's length to the steps that fit in ``seconds_left`` (a time-limited run, at
        the end of its warm-up): the same curve the planned schedule would follow, just with a measured end."""
        cfg = self.config
        steps = state["step"] + max(int(seconds_left / seconds_per_step), 1)
        schedule = RestartedCosine(cfg.learning_rate, 0, steps, cfg.warmup_steps)
        model.optimizer.learning_rate = schedule
        model.make_train_function(force=True)  # the schedule is traced into the compiled step
        self.config = replace(cfg, steps=steps)
        saved_path = self.run_dir / "config.json"
        saved = json.loads(saved_path.read_text())
        saved.update(steps=steps, fitted_at_step=state["step"], seconds_per_step=round(seconds_per_step, 5),
                     schedule=schedule.get_config())
        write_json(saved_path, saved)

    def _fit_step(self, step: int) -> tuple[int, int] | None:
        """For a time-limited run not fitted yet: the steps between which to time it and the step at which to fit
        its schedule (the warm-up's end, at least step 20); None if it is fitted or too close to that step.

        The timing starts halfway, after compilation and once the batches prefetched meanwhile are used up."""
        saved = json.loads((self.run_dir / "config.json").read_text())
        fit = max(self.config.warmup_steps, 20)
        if "fitted_at_step" in saved or fit - step < 10:
            return None
        return step + (fit - step) // 2, fit

    def run(self) -> dict:
        """Train (or resume) to ``config.steps``, or until ``time_limit_minutes`` run out; returns the final state."""
        model, state = self._load_or_build()
        cfg = self.config
        scales = cfg.network.scales
        files = find_images(self.train_dirs)
        refuse_benchmark_images(files, self.validation_dir.parent)
        spec = SamplerSpec(tuple(files), scales, cfg.lr_patch, cfg.batch, cfg.seed + state["step"], cfg.degradation)
        self._record_data(files, spec, state["step"])
        self._record_device(state["step"])
        batches = batch_stream(spec, cfg.data_workers)
        session_start = time.monotonic()
        deadline = session_start + cfg.time_limit_minutes * 60 if cfg.time_limit_minutes else None
        fit_at = self._fit_step(state["step"]) if deadline else None
        rate_from: tuple[int, float] | None = None
        last_save = time.monotonic()
        started = time.monotonic() - state["seconds"]
        losses: list[float] = []
        bar = tqdm(total=cfg.steps, initial=state["step"], desc="train", mininterval=10, dynamic_ncols=True)
        while state["step"] < self.config.steps:
            batch = next(batches)
            inputs = feed(model, *(dict(zip(scales, arrays, strict=True))
                                   for arrays in (batch.lrs, batch.strengths, batch.grids)))
            loss = model.train_on_batch(inputs, batch.hrs)
            losses.append(float(np.ravel(loss)[0]))
            state["step"] += 1
            bar.update(1)
            now = time.monotonic()
            if fit_at is not None and state["step"] == fit_at[0]:
                rate_from = (state["step"], now)
            if fit_at is not None and state["step"] == fit_at[1] and rate_from:
                per_step = (now - rate_from[1]) / (state["step"] - rate_from[0])
                # keep back 10 % for what the rate missed: the recompile, validations (and their compiles), the save
                self._fit_schedule(model, state, per_step, (deadline - now) * 0.9)
                bar.total = self.config.steps
            finished = state["step"] == self.config.steps or (deadline is not None and now > deadline)
            if state["step"] % cfg.validate_every == 0 or finished:
                psnrs = self.validate(model)
                state["seconds"] = time.monotonic() - started
                losses_mean = float(np.mean(losses))
                self._log({"step": state["step"], "seconds": round(state["seconds"], 1),
                           "loss": round(losses_mean, 6),
                           **{k: round(p, 3) for k, p in psnrs.items()}})
                losses.clear()
                state["last_psnr"] = psnrs
                bar.set_postfix({"loss": f"{losses_mean:.4f}", **{k: f"{p:.2f}" for k, p in psnrs.items()}})
            if time.monotonic() - last_save > cfg.checkpoint_minutes * 60 or finished:
                state["seconds"] = time.monotonic() - started
                self._save(model, state)
                last_save = time.monotonic()
            if finished:
                break
        bar.close()
        return state
