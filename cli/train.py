"""``upscaler train``: train (or resume) a super-resolution network and export its weights."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cli.arguments import non_negative_int, positive_float, positive_int
from shared.catalog import WEIGHTS_SUFFIX, record_beside
from shared.settings import PACKAGE_ROOT


def check_shipped(weights: Path) -> None:
    """Refuse ``--init-from`` before a run folder is made unless it names weights with their record beside them
    (the record gives the network's shape; without it the run failed after loading TensorFlow)."""
    try:
        record = record_beside(weights)
    except ValueError:
        raise FileNotFoundError(f"--init-from takes a shipped network's <name>{WEIGHTS_SUFFIX}, not {weights}") \
            from None
    for path, what in ((weights, "weights file"), (record, "record beside the weights")):
        if not path.exists():
            raise FileNotFoundError(f"no such {what}: {path}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from shared.limits import SCALES
    from shared.settings import PRECISION_CHOICES

    p = sub.add_parser("train", help="train or resume a super-resolution network on ../shared/data/train",
                       description="Options the run's config holds (network, mix, loss, batch, schedule) default, "
                                   "on a resume, to the run's own; a resume may not change its network.")
    p.add_argument("--run-dir", type=Path, default=Path("runs/residual_sr"), help="checkpoint/metrics folder")
    p.add_argument("--data", type=Path, default=None,
                   help="data root (default: $UPSCALER_DATA_DIR or ../shared/data beside the checkout)")
    p.add_argument("--arch", default=None,
                   help="residual_sr (fidelity) or residual_sr_cond (strength-conditioned); default residual_sr")
    p.add_argument("--degrade", action=argparse.BooleanOptionalAction, default=None,
                   help="train on realistic damage (blur, resamplers, noise, JPEG; see worker/training/degradation.py)")
    p.add_argument("--init-from", type=Path, default=None,
                   help="start from a shipped network's weights (e.g. shared/weights/residual_sr.weights.h5)")
    p.add_argument("--steps", type=positive_int, default=None, help="default 18000")
    p.add_argument("--batch", type=positive_int, default=None, help="patches per scale per step (default 16)")
    p.add_argument("--lr-patch", type=positive_int, default=None, help="LR patch side (default 48)")
    p.add_argument("--learning-rate", type=positive_float, default=None,
                   help="peak (default 1e-3; an extension's new cycle, default the run's own)")
    p.add_argument("--warmup-steps", type=non_negative_int, default=None, help="default 500")
    p.add_argument("--blocks", type=positive_int, default=None, help="default 6")
    p.add_argument("--channels", type=positive_int, default=None, help="default 48")
    p.add_argument("--scales", type=int, nargs="+", choices=SCALES, default=None, help="default 2 3 4")
    p.add_argument("--loss", choices=["l1", "luma_l1"], default=None,
                   help="l1 on RGB, or luma_l1: L1 on luma plus a quarter on colour (what Y-PSNR and the eye judge); "
                        "default l1")
    p.add_argument("--jpeg-grid", type=int, default=None, choices=[0, 8],
                   help="tell the network where its input's JPEG 8x8 block grid lies (8), or not (0, the default)")
    p.add_argument("--half-res-blocks", type=non_negative_int, default=None,
                   help="residual blocks of a half-resolution context branch before the trunk (default 0: none)")
    p.add_argument("--half-res-channels", type=positive_int, default=None, help="default 96")
    p.add_argument("--convs", default=None,
                   help="plain (default), or rep: train each 3x3 conv as branches (3x3, 1x1, 1x1->3x3, identity) "
                        "fused into one kernel every step; the exported network is the plain one, at its cost")
    p.add_argument("--seed", type=int, default=None, help="default 1234")
    p.add_argument("--validate-every", type=positive_int, default=1000)
    p.add_argument("--checkpoint-minutes", type=positive_float, default=5.0)
    p.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                   help="auto: bf16 mixed precision only where the CPU has native bf16 (AVX512_BF16/AMX) or on a GPU "
                        "under JAX; a resumed run is converted to it (weights and optimizer state)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for TensorFlow (0: all cores)")
    p.add_argument("--data-workers", type=non_negative_int, default=0,
                   help="processes sampling and degrading patches (0: one thread, enough on a CPU; a GPU needs ~6+)")
    p.add_argument("--time-limit", type=positive_float, default=None, metavar="MINUTES",
                   help="a new run trains for this long: its cosine decay is fitted to the step rate measured in "
                        "the warm-up, so it anneals as the time runs out (--steps is then only the plan)")
    p.add_argument("--export", type=Path, default=None,
                   help="after training, write weights + record into this folder (e.g. shared/weights)")
    p.add_argument("--name", default=None, help="exported model name (default: the architecture's name)")
    p.set_defaults(func=run)

    e = sub.add_parser("export", help="write a run's weights and record (e.g. into shared/weights) without training")
    e.add_argument("run_dir", type=Path, help="a run folder (checkpoint.keras, config.json, state.json)")
    e.add_argument("--to", type=Path, default=None,
                   help="models folder (default: the one the platform serves, $UPSCALER_MODELS_DIR or shared/weights)")
    e.add_argument("--name", default=None, help="model name (default: the architecture's name)")
    e.set_defaults(func=export)


# Command-line options a run's config holds: on a resume, those not given are the run's own (config_for).
NETWORK_OPTIONS = ("blocks", "channels", "scales", "jpeg_grid", "half_res_blocks", "half_res_channels")
RUN_OPTIONS = ("arch", "steps", "batch", "lr_patch", "learning_rate", "warmup_steps", "seed", "loss", "convs")


# the team's data folder beside the checkout (../shared/data from its root), wherever the command is run from
DEFAULT_DATA = PACKAGE_ROOT.parent.parent / "shared" / "data"


def data_root(explicit: Path | None) -> Path:
    """The training/benchmark data folder: flag, then $UPSCALER_DATA_DIR, then ../shared/data from the checkout's
    root (relative to the working directory, eval and train found nothing when run from anywhere else)."""
    return explicit or Path(os.environ.get("UPSCALER_DATA_DIR") or DEFAULT_DATA)


def run(args: argparse.Namespace) -> int:
    from shared.settings import Settings
    from worker.engine.archs import arch_names
    from worker.engine.precision import choose_precision
    from worker.engine.threads import limit_threads
    from worker.training.degradation import DegradationConfig
    from worker.training.export import check_catalog_kept, check_model_name, export_weights
    from worker.training.reparam import CONV_FACTORIES
    from worker.training.trainer import Trainer, config_for, saved_config

    # checked here, not as argparse choices: their registries import Keras, which the API's image does not have
    for option, value, known in (("--arch", args.arch, arch_names()), ("--convs", args.convs, sorted(CONV_FACTORIES))):
        if value is not None and value not in known:
            print(f"upscaler train: {option} {value!r} is not one of {', '.join(known)}", file=sys.stderr)
            return 2
    if args.name:
        check_model_name(args.name)  # before training, not after it
    root = data_root(args.data)
    if args.init_from:
        check_shipped(args.init_from)
    resuming = saved_config(args.run_dir) is not None
    if resuming and args.init_from:
        print(f"upscaler train: {args.run_dir} resumes its own checkpoint; --init-from starts a new run only",
              file=sys.stderr)
        return 2
    limit_threads(args.threads)
    given = {name: value for name, value in vars(args).items() if value is not None}
    network = {name: given[name] for name in NETWORK_OPTIONS if name in given}
    if "scales" in network:
        network["scales"] = tuple(network["scales"])
    options = {name: given[name] for name in RUN_OPTIONS if name in given}
    if "degrade" in given:
        options["degradation"] = DegradationConfig() if given["degrade"] else None
    config = config_for(args.run_dir, network, **options, precision=choose_precision(args.precision),
                        init_from=str(args.init_from) if args.init_from else None,
                        checkpoint_minutes=args.checkpoint_minutes, validate_every=args.validate_every,
                        data_workers=args.data_workers, time_limit_minutes=args.time_limit)
    if args.export:  # before training, not after it
        check_catalog_kept(args.export, args.name or config.arch, config.arch, config.network.to_dict(),
                           Settings.from_env(secret=False))
    print(f"{'resuming' if resuming else 'training'} {config.arch} ({config.network.shape_words}) in "
          f"{config.precision}")
    trainer = Trainer(args.run_dir, config, [root / "train"], root / "benchmark" / "set5")
    state = trainer.run()
    print(f"trained to step {state['step']} in {state['seconds'] / 60:.1f} min; Set5 PSNR {state.get('last_psnr')}")
    if args.export:
        path = export_weights(args.run_dir, args.export, args.name, Settings.from_env(secret=False))
        print(f"exported {path}")
    return 0


def export(args: argparse.Namespace) -> int:
    """Why not ``train --export``: that resumes the run first, and a run stopped at its time limit would train on.
    The record's earlier benchmark tables are dropped (they measured other weights): ``upscaler eval --record``."""
    from shared.settings import Settings
    from worker.training.export import export_weights

    if not (args.run_dir / "checkpoint.keras").exists():
        raise FileNotFoundError(f"no checkpoint.keras in {args.run_dir}")
    settings = Settings.from_env(secret=False)
    to = args.to or settings.models_dir  # where the platform looks (a relative default wrote elsewhere)
    print(f"exported {export_weights(args.run_dir, to, args.name, settings)}; its record's benchmark tables are empty "
          f"until measured again (upscaler eval --record, docs/model.md)")
    return 0
