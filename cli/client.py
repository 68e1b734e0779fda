"""A small Python client for the HTTP API (used by ``upscaler submit`` and ``upscaler dev``).

    client = UpscalerClient("http://127.0.0.1:8000", api_key=None)
    job = client.submit("photo.jpg", scale=4, output_format="png")
    job = client.wait(job["id"])
    client.download(job["id"], "photo_x4.png")
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import requests


class ApiProblem(RuntimeError):
    """The API answered with an error (its problem-details body is in ``problem``)."""

    def __init__(self, problem: dict):
        super().__init__(f"{problem.get('status')} {problem.get('code')}: {problem.get('detail')}")
        self.problem = problem


class UpscalerClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self.http = requests.Session()
        if api_key:
            self.http.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout = timeout

    def _check(self, response: requests.Response) -> dict:
        if response.status_code >= 400:
            try:
                raise ApiProblem(response.json())
            except ValueError:
                response.raise_for_status()
        return response.json()

    def submit(self, image: str | Path, scale: float | None = None, output_format: str = "png",
               quality: int | None = None, model: str | None = None, webhook_url: str | None = None,
               denoise: float | str | None = None, width: int | None = None, height: int | None = None,
               fit: str | None = None) -> dict:
        """A factor (``scale``, 1..8) or a target ``width``/``height`` (``fit`` for both); ``denoise``: 0..1 or
        "auto" (the server measures it from the file). None leaves each to the server's default."""
        fields = {"format": output_format}
        for name, value in (("scale", scale), ("width", width), ("height", height), ("fit", fit),
                            ("quality", quality), ("model", model), ("webhook_url", webhook_url),
                            ("denoise", denoise)):
            if value is not None:
                fields[name] = str(value)
        with open(image, "rb") as fh:
            response = self.http.post(f"{self.base_url}/v1/jobs", data=fields,
                                      files={"image": (Path(image).name, fh)}, timeout=self.timeout)
        return self._check(response)

    def get(self, job_id: str) -> dict:
        return self._check(self.http.get(f"{self.base_url}/v1/jobs/{job_id}", timeout=self.timeout))

    def wait(self, job_id: str, timeout: float = 3600, interval: float = 0.5,
             on_update: Callable[[dict], None] | None = None) -> dict:
        """Poll until the job is succeeded, failed or canceled."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if on_update:
                on_update(job)
            if job["status"] in ("succeeded", "failed", "canceled"):
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout}s")
            time.sleep(interval)

    def download(self, job_id: str, destination: str | Path) -> Path:
        """Fetch the result through its expiring ``result_url`` (presigned S3 or a signed link: no API key)."""
        job = self.get(job_id)
        if job["status"] != "succeeded":
            raise ApiProblem({"status": 409, "code": "result_not_ready", "detail": f"the job is {job['status']}"})
        with requests.get(job["result_url"], stream=True, timeout=self.timeout) as r:
            if r.status_code >= 400:
                self._check(r)
            destination = Path(destination)
            destination.parent.mkdir(parents=True, exist_ok=True)
            with open(destination, "wb") as fh:
                for chunk in r.iter_content(1024 * 1024):
                    fh.write(chunk)
        return destination
