"""The architecture registry: a model record names its ``arch``, the registry builds it.

BasicSR's ``ARCH_REGISTRY`` idea: builders register themselves under a name, and everything that needs a
network (the engine, training, export) asks the registry with the record's ``arch`` and ``network``
fields. A new architecture is a new module with a registered builder; the engine does not change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


class ArchConfig(Protocol):
    """What every architecture's hyper-parameter object offers."""

    scales: tuple[int, ...]
    jpeg_grid: int  # the JPEG block period the network is told its windows' position in; 0: not told

    @property
    def receptive_radius(self) -> int: ...

    @property
    def alignment(self) -> int: ...  # windows start on multiples of this (tiling)

    def to_dict(self) -> dict: ...

    def multiply_adds_per_lr_pixel(self, scale: int) -> int: ...


@dataclass(frozen=True)
class Arch:
    """A registered architecture: how to read its config and build it, and whether it takes a strength input."""

    name: str
    config_type: Any
    build: Callable[..., Any]
    conditioned: bool

    def config(self, data: dict) -> ArchConfig:
        return self.config_type.from_dict(data)

    @property
    def description(self) -> str:
        """The builder's docstring, first paragraph: what this network is for (shown by GET /v1/models)."""
        return " ".join((self.build.__doc__ or self.name).split("\n\n")[0].split())


ARCH_REGISTRY: dict[str, Arch] = {}


def register_arch(name: str, config_type: Any, conditioned: bool) -> Callable:
    """Decorator: register ``build(config, dtype="float32", conv=None) -> keras.Model`` under ``name``; ``conv``
    makes the network's 3x3 convs (None: plain ones; training may pass ``worker.training.reparam.rep_conv``)."""

    def wrap(build: Callable) -> Callable:
        if name in ARCH_REGISTRY:
            raise ValueError(f"architecture {name!r} registered twice")
        ARCH_REGISTRY[name] = Arch(name, config_type, build, conditioned)
        return build

    return wrap


def arch_names() -> list[str]:
    """Every registered architecture's name (what ``upscaler train --arch`` offers)."""
    import worker.engine.network  # noqa: F401  (registers the residual family)

    return sorted(ARCH_REGISTRY)


def get_arch(name: str) -> Arch:
    """The registered architecture called ``name`` (builders are imported on first use)."""
    import worker.engine.network  # noqa: F401  (registers the residual family)

    try:
        return ARCH_REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCH_REGISTRY))}") from None
