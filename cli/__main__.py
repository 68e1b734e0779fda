"""Entry point of the ``upscaler`` console script (``python -m cli`` works too)."""

from __future__ import annotations

import argparse
import sys

from cli import dev, evaluate, keys, services, submit, train, upscale


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="upscaler", description="AI image upscaling job platform")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (services, dev, upscale, submit, train, evaluate, keys):
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
