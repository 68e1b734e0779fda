"""``upscaler train``: train (or resume) a super-resolution network and export its weights."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    from shared.settings import PRECISION_CHOICES

    p = sub.add_parser("train", help="train or resume a super-resolution network on ../shared/data/train")
    p.add_argument("--run-dir", type=Path, default=Path("runs/residual_sr"), help="checkpoint/metrics folder")
    p.add_argument("--data", type=Path, default=None, help="data root (default: $UPSCALER_DATA_DIR or ../shared/data)")
    p.add_argument("--arch", default="residual_sr",
                   help="registered architecture: residual_sr (fidelity) or residual_sr_cond (strength-conditioned)")
    p.add_argument("--degrade", action="store_true",
                   help="train on realistic damage (blur, resamplers, noise, JPEG; see worker/training/degradation.py)")
    p.add_argument("--init-from", type=Path, default=None,
                   help="start from a shipped network's weights (e.g. shared/weights/residual_sr.weights.h5)")
    p.add_argument("--steps", type=int, default=18000)
    p.add_argument("--batch", type=int, default=16, help="patches per scale per step")
    p.add_argument("--lr-patch", type=int, default=48)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=500)
    p.add_argument("--blocks", type=int, default=6)
    p.add_argument("--channels", type=int, default=48)
    p.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    p.add_argument("--loss", choices=["l1", "luma_l1"], default=None,
                   help="l1 on RGB, or luma_l1: L1 on luma plus a quarter on colour (what Y-PSNR and the eye judge); "
                        "default: the run's own when resuming, else l1")
    p.add_argument("--jpeg-grid", type=int, default=0, choices=[0, 8],
                   help="tell the network where its input's JPEG 8x8 block grid lies (8), or not (0)")
    p.add_argument("--half-res-blocks", type=int, default=0,
                   help="residual blocks of a half-resolution context branch before the trunk (0: none)")
    p.add_argument("--half-res-channels", type=int, default=96)
    p.add_argument("--convs", default="plain",
                   help="plain, or rep: train each 3x3 conv as branches (3x3, 1x1, 1x1->3x3, identity) fused into "
                        "one kernel every step; the exported network is the plain one, at the plain one's cost")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--validate-every", type=int, default=1000)
    p.add_argument("--checkpoint-minutes", type=float, default=5.0)
    p.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                   help="auto: bf16 mixed precision only where the CPU has native bf16 (AVX512_BF16/AMX) or on a GPU "
                        "under JAX")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for TensorFlow (0: all cores)")
    p.add_argument("--data-workers", type=int, default=0,
                   help="processes sampling and degrading patches (0: one thread, enough on a CPU; a GPU needs ~6+)")
    p.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                   help="a new run trains for this long: its cosine decay is fitted to the step rate measured in "
                        "the warm-up, so it anneals as the time runs out (--steps is then only the plan)")
    p.add_argument("--export", type=Path, default=None,
                   help="after training, write weights + record into this folder (e.g. shared/weights)")
    p.add_argument("--name", default=None, help="exported model name (default: the architecture's name)")
    p.set_defaults(func=run)

    e = sub.add_parser("export", help="write a run's weights and record (e.g. into shared/weights) without training")
    e.add_argument("run_dir", type=Path, help="a run folder (checkpoint.keras, config.json, state.json)")
    e.add_argument("--to", type=Path, default=Path("shared/weights"), help="folder of the shipped models")
    e.add_argument("--name", default=None, help="model name (default: the architecture's name)")
    e.set_defaults(func=export)


def data_root(explicit: Path | None) -> Path:
    """The training/benchmark data folder: flag, then $UPSCALER_DATA_DIR, then ../shared/data."""
    return explicit or Path(os.environ.get("UPSCALER_DATA_DIR", "../shared/data"))


def run(args: argparse.Namespace) -> int:
    from worker.engine.network import NetworkConfig
    from worker.engine.precision import choose_precision
    from worker.engine.threads import limit_threads
    from worker.training.degradation import DegradationConfig
    from worker.training.export import export_weights
    from worker.training.trainer import TrainConfig, Trainer, run_loss

    limit_threads(args.threads)
    root = data_root(args.data)
    precision = choose_precision(args.precision)
    config = TrainConfig(
        arch=args.arch,
        network=NetworkConfig(blocks=args.blocks, channels=args.channels, scales=tuple(args.scales),
                              jpeg_grid=args.jpeg_grid, half_res_blocks=args.half_res_blocks,
                              half_res_channels=args.half_res_channels),
        degradation=DegradationConfig() if args.degrade else None,
        init_from=str(args.init_from) if args.init_from else None,
        steps=args.steps, batch=args.batch, lr_patch=args.lr_patch, learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps, seed=args.seed, convs=args.convs, precision=precision,
        loss=args.loss or run_loss(args.run_dir),
        checkpoint_minutes=args.checkpoint_minutes, validate_every=args.validate_every,
        data_workers=args.data_workers, time_limit_minutes=args.time_limit,
    )
    print(f"training {args.arch} in {precision}")
    trainer = Trainer(args.run_dir, config, [root / "train"], root / "benchmark" / "set5")
    state = trainer.run()
    print(f"trained to step {state['step']} in {state['seconds'] / 60:.1f} min; Set5 PSNR {state.get('last_psnr')}")
    if args.export:
        path = export_weights(args.run_dir, args.export, args.name)
        print(f"exported {path}")
    return 0


def export(args: argparse.Namespace) -> int:
    """Why not ``train --export``: that resumes the run first, and a run stopped at its time limit would train on.
    The record's earlier benchmark tables are dropped (they measured other weights): ``upscaler eval --record``."""
    from worker.training.export import export_weights

    if not (args.run_dir / "checkpoint.keras").exists():
        raise FileNotFoundError(f"no checkpoint.keras in {args.run_dir}")
    print(f"exported {export_weights(args.run_dir, args.to, args.name)}; its record's benchmark tables are empty "
          f"until measured again (upscaler eval --record, docs/model.md)")
    return 0
