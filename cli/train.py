"""``upscaler train``: train (or resume) the multi-scale network and export its weights."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train or resume the super-resolution network on ../shared/data/train")
    p.add_argument("--run-dir", type=Path, default=Path("runs/residual_sr"), help="checkpoint/metrics folder")
    p.add_argument("--data", type=Path, default=None, help="data root (default: $UPSCALER_DATA_DIR or ../shared/data)")
    p.add_argument("--steps", type=int, default=18000)
    p.add_argument("--batch", type=int, default=16, help="patches per scale per step")
    p.add_argument("--lr-patch", type=int, default=48)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--blocks", type=int, default=6)
    p.add_argument("--channels", type=int, default=48)
    p.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--validate-every", type=int, default=1000)
    p.add_argument("--checkpoint-minutes", type=float, default=5.0)
    p.add_argument("--no-mixed-precision", action="store_true", help="train in float32 (bf16 halves CPU step time)")
    p.add_argument("--export", type=Path, default=None,
                   help="after training, write weights + record into this folder (e.g. worker/engine/weights)")
    p.set_defaults(func=run)


def data_root(explicit: Path | None) -> Path:
    """The training/benchmark data folder: flag, then $UPSCALER_DATA_DIR, then ../shared/data."""
    return explicit or Path(os.environ.get("UPSCALER_DATA_DIR", "../shared/data"))


def run(args: argparse.Namespace) -> int:
    from worker.engine.network import NetworkConfig
    from worker.training.export import export_weights
    from worker.training.trainer import TrainConfig, Trainer

    root = data_root(args.data)
    config = TrainConfig(
        network=NetworkConfig(blocks=args.blocks, channels=args.channels, scales=tuple(args.scales)),
        steps=args.steps, batch=args.batch, lr_patch=args.lr_patch, learning_rate=args.learning_rate,
        seed=args.seed, mixed_precision=not args.no_mixed_precision,
        checkpoint_minutes=args.checkpoint_minutes, validate_every=args.validate_every,
    )
    trainer = Trainer(args.run_dir, config, [root / "train"], root / "benchmark" / "set5")
    state = trainer.run()
    print(f"trained to step {state['step']} in {state['seconds'] / 60:.1f} min; Set5 PSNR {state.get('last_psnr')}")
    if args.export:
        path = export_weights(args.run_dir, args.export)
        print(f"exported {path}")
    return 0
