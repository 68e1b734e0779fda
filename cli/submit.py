"""``upscaler submit IMAGE``: send a job to a running API and optionally wait for the result."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="submit an image to a running API (see also the Python client)")
    p.add_argument("image", type=Path)
    p.add_argument("--api", default="http://127.0.0.1:8000")
    p.add_argument("--api-key", default=os.environ.get("UPSCALER_API_KEY"), help="default: $UPSCALER_API_KEY")
    p.add_argument("--scale", type=float, default=None, help="factor 1..8 (default 4 without --width/--height)")
    p.add_argument("--width", type=int, default=None, help="output width in pixels")
    p.add_argument("--height", type=int, default=None, help="output height in pixels")
    p.add_argument("--fit", choices=("contain", "cover", "fill"), default=None, help="with both width and height")
    p.add_argument("--format", choices=("png", "jpeg", "webp"), default="png")
    p.add_argument("--quality", type=int, default=None)
    p.add_argument("--model", default=None, help="default: the server's ('auto': a network chosen per input)")
    p.add_argument("--denoise", default=None,
                   help="restoration strength 0..1, or 'auto' (measured from the file); models with denoise only")
    p.add_argument("--webhook-url", default=None)
    p.add_argument("--wait", action="store_true", help="poll until the job ends")
    p.add_argument("--output", type=Path, default=None, help="with --wait: download the result here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cli.client import UpscalerClient

    client = UpscalerClient(args.api, args.api_key)
    job = client.submit(args.image, args.scale, args.format, args.quality, args.model, args.webhook_url,
                        denoise=args.denoise, width=args.width, height=args.height, fit=args.fit)
    if args.wait:
        job = client.wait(job["id"])
        if job["status"] == "succeeded" and args.output:
            client.download(job["id"], args.output)
    print(json.dumps(job, indent=2))
    return 0 if job["status"] in ("queued", "running", "succeeded") else 1
