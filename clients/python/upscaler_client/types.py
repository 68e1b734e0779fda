"""Typed results: dataclasses built from the API's JSON (unknown fields are kept in ``raw``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from upscaler_client.client import Client, Jobs

TERMINAL = ("succeeded", "failed", "canceled")


@dataclass(frozen=True)
class ImageInfo:
    width: int | None
    height: int | None
    bytes: int | None
    format: str | None
    filename: str | None = None
    url: str | None = None

    @classmethod
    def from_json(cls, data: dict) -> ImageInfo:
        return cls(data.get("width"), data.get("height"), data.get("bytes"), data.get("format"),
                   data.get("filename"), data.get("url"))


@dataclass
class Job:
    id: str
    status: str
    progress: float
    model: str
    input: ImageInfo
    output: ImageInfo
    result_url: str | None
    error: dict | None
    ran: dict | None
    timings: dict | None
    raw: dict = field(repr=False)
    _client: Client | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict, client: Client | None = None) -> Job:
        return cls(data["id"], data["status"], data["progress"], data["model"], ImageInfo.from_json(data["input"]),
                   ImageInfo.from_json(data["output"]), data.get("result_url"), data.get("error"), data.get("ran"),
                   data.get("timings"), data, client)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def _jobs(self) -> Jobs:
        """The client's jobs this job was read through; a job built by hand (``Job.from_json`` of a webhook's
        ``data``) has none: it was an AttributeError on None."""
        if self._client is None:
            raise RuntimeError("this Job was not read through a Client: use client.jobs.get(job.id) first")
        return self._client.jobs

    def refresh(self) -> Job:
        return self._jobs.get(self.id)

    def wait(self, timeout: float = 3600, on_progress: Callable[[Job], Any] | None = None,
             interval: float | None = None, on_unavailable: Callable[[Exception], Any] | None = None) -> Job:
        """Poll until the job ends (at the API's ``Retry-After`` unless ``interval`` is given); ``JobFailed`` if it
        failed or was canceled, ``Timeout`` if time runs out. See ``Jobs.wait`` for ``on_unavailable``."""
        return self._jobs.wait(self.id, timeout=timeout, on_progress=on_progress, interval=interval,
                               on_unavailable=on_unavailable)

    def download(self, path: str | Path) -> Path:
        return self._jobs.download(self.id, path)

    def cancel(self) -> Job:
        return self._jobs.cancel(self.id)

    def delete(self) -> Job:
        return self._jobs.delete(self.id)


@dataclass(frozen=True)
class Model:
    name: str
    scales: list[int]
    description: str
    denoise: bool
    default: bool
    raw: dict = field(repr=False)

    @classmethod
    def from_json(cls, data: dict) -> Model:
        return cls(data["name"], data["scales"], data.get("description", ""), data.get("denoise", False),
                   data.get("default", False), data)


@dataclass(frozen=True)
class Usage:
    """The key's limits and what it uses of them now (``GET /v1/usage``); a limit of None is unlimited, a use of
    None not known (the API's Redis unreachable)."""

    tenant: str
    requests_per_minute: int | None
    queued: int
    running: int
    max_active_jobs: int | None
    megapixels_used_today: float | None
    daily_megapixels: int | None
    megapixels_left_today: float | None
    resets_at: datetime
    raw: dict = field(repr=False)

    @classmethod
    def from_json(cls, data: dict) -> Usage:
        active, daily = data["active_jobs"], data["daily"]
        return cls(data["tenant"], data["requests"]["limit_per_minute"], active["queued"], active["running"],
                   active["limit"], daily["used_megapixels"], daily["limit_megapixels"],
                   daily["remaining_megapixels"], _utc_time(daily["resets_at"]), data)


def _utc_time(text: str) -> datetime:
    """A time as the API writes it (UTC, ending ``Z``): ``datetime.fromisoformat`` reads the ``Z`` only from Python
    3.11, and the SDK runs on 3.10, where every ``client.usage()`` raised ValueError."""
    return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
