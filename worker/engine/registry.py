"""Engines by model name, loaded lazily and kept for the life of the worker process."""

from __future__ import annotations

import threading

from shared.catalog import BICUBIC, ModelInfo, catalog_for
from shared.settings import Settings
from worker.engine.base import BicubicEngine, Engine


class UnknownModel(KeyError):
    """The job names a model this worker does not have."""


class ModelUnloadable(UnknownModel):
    """The worker has the model's files but cannot build its network from them: weights truncated, or not weights
    at all (a Git LFS pointer), a record naming an architecture no builder has, or a shape the weights do not fit.

    An ``UnknownModel`` to every caller: the job fails ``engine_failed`` (it failed ``internal_error``, "an
    unexpected error", while docs/errors.md promised ``engine_failed``) and a split job's band is left to a worker
    that can build the network. The cause is in the message, for the operator's log."""

    def __init__(self, name: str, weights: object, cause: Exception):
        super().__init__(name)
        self.name = name
        self.why = f"model {name!r} could not be loaded from {weights}: {type(cause).__name__}: {cause}"

    def __str__(self) -> str:
        return self.why


class EngineRegistry:
    """Thread-safe: a background preload and a task asking for the same network load it once."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.catalog: dict[str, ModelInfo] = catalog_for(settings)
        self._engines: dict[str, Engine] = {BICUBIC: BicubicEngine()}
        self._lock = threading.Lock()

    def get(self, name: str) -> Engine:
        """The engine of a network (or bicubic); ``auto`` is a route, resolved by ``worker.engine.selection``."""
        with self._lock:
            if name not in self._engines:
                info = self.catalog.get(name)
                if info is None or info.weights is None:
                    raise UnknownModel(name)
                from worker.engine.network_engine import NetworkEngine
                from worker.engine.precision import choose_precision

                try:
                    self._engines[name] = NetworkEngine(info.weights, self.settings.tile_size,
                                                        self.settings.memory_budget_mb,
                                                        choose_precision(self.settings.inference_precision))
                except Exception as exc:  # not cached: a file put right is loaded by the next job
                    raise ModelUnloadable(name, info.weights, exc) from exc
            return self._engines[name]

    def preload(self, name: str) -> None:
        """Load ``name``, or every network it routes to."""
        info = self.catalog.get(name)
        for target in (info.routes or {}).values() if info and info.routes else [name]:
            self.get(target)
