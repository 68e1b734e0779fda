"""A job submitted through the Flask API, run by a real Celery worker process, fetched by its URL."""

from __future__ import annotations

import io
import json
import time

import pytest
import requests
from PIL import Image

from tests.conftest import image_bytes
from tests.workers import start_worker, stop_worker, wait_for, with_beat


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["local", "s3"])
def test_job_through_api_queue_and_worker_process(request, settings, tmp_path, storage):
    from api import create_app

    if storage == "s3":
        settings = request.getfixturevalue("s3_settings")
    app = create_app(settings)
    client = app.test_client()
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        response = client.post("/v1/jobs", data={"image": (io.BytesIO(image_bytes(width=90, height=70, fmt="JPEG")),
                                                          "p.jpg"), "scale": "2", "format": "webp"},
                               content_type="multipart/form-data")
        assert response.status_code == 202, response.get_json()
        job = wait_for(client, response.get_json()["id"])
        webp = client.post("/v1/jobs", data={"image": (io.BytesIO(image_bytes(width=90, height=70, fmt="WEBP")),
                                                       "w.webp"), "scale": "2"}, content_type="multipart/form-data")
        assert webp.status_code == 202, webp.get_json()
        webp_job = wait_for(client, webp.get_json()["id"])
    finally:
        stop_worker(worker)
    assert job["status"] == "succeeded", (job, (tmp_path / "worker.log").read_text()[-3000:])
    # a lossy WebP is measured by the quantizer in its frame header, and the API shows it
    webp_ran = webp_job["ran"]
    assert webp_job["status"] == "succeeded" and webp_ran["input"]["format"] == "WEBP" and webp_ran["input"]["lossy"]
    from worker.engine.strength import quantizer_strength
    from worker.webp_header import read_webp_compression

    sent = tmp_path / "sent.webp"
    sent.write_bytes(image_bytes(width=90, height=70, fmt="WEBP"))
    quantizer = read_webp_compression(sent).luma_quantizer
    assert webp_ran["input"]["quantizer"] == round(quantizer, 1) and "quantizer" in webp_ran["reason"]
    assert webp_ran["strength"] >= round(quantizer_strength("WEBP", quantizer), 3)  # or its noise's, if larger
    assert job["model"] == "auto" and job["progress"] == 1.0
    assert job["ran"]["model"] == "residual_sr_cond" and job["ran"]["input"]["format"] == "JPEG"  # a JPEG in
    assert job["ran"]["precision"] == settings.inference_precision and "white_noise_sigma" in job["ran"]["input"]
    assert (job["output"]["width"], job["output"]["height"]) == (180, 140)
    if storage == "s3":
        download = requests.get(job["result_url"], timeout=10)
        assert download.status_code == 200
        data = download.content
    else:
        data = client.get(job["result_url"].split("localhost", 1)[-1]).data
    with Image.open(io.BytesIO(data)) as out:
        assert (out.format, out.size) == ("WEBP", (180, 140))


@pytest.mark.slow
def test_jobs_accepted_while_redis_was_down_run_once_the_sweeper_enqueues_them(settings, tmp_path, redis_url):
    from api import create_app

    down = create_app(settings.with_overrides(redis_url="redis://127.0.0.1:9/0")).test_client()
    response = down.post("/v1/jobs", data={"image": (io.BytesIO(image_bytes()), "a.png"), "model": "bicubic",
                                           "scale": "2"}, content_type="multipart/form-data")
    assert response.status_code == 202
    up = create_app(settings).test_client()
    worker = start_worker(settings.with_overrides(sweep_interval=1.0), tmp_path / "worker.log", *with_beat(tmp_path))
    try:
        job = wait_for(up, response.get_json()["id"], timeout=90)
    finally:
        stop_worker(worker)
    assert job["status"] == "succeeded", (tmp_path / "worker.log").read_text()[-3000:]


WORKER_SERIES = ('upscaler_jobs_finished_total{code="",status="succeeded"} 1.0',
                 "upscaler_job_duration_seconds_bucket", "upscaler_job_input_megapixels_bucket",
                 "upscaler_inference_input_megapixels_total", "upscaler_inference_seconds_total")


def _scrape_until(url: str, series: tuple[str, ...], timeout: float = 10) -> str:
    """The worker counts a job just after committing it, so a client can see ``succeeded`` a moment before
    the series move: scrape until all of them are there (or the deadline passes; the caller asserts)."""
    deadline = time.monotonic() + timeout
    while True:
        text = requests.get(url, timeout=10).text
        if all(s in text for s in series) or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


@pytest.mark.slow
def test_metrics_and_json_logs_after_a_job(settings, tmp_path):
    """The documented series appear on the API's /metrics and on the worker's metrics port."""
    from api import create_app
    from cli.processes import free_port, wait_for_port

    port = free_port()
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    client = create_app(settings).test_client()
    worker = start_worker(settings.with_overrides(worker_metrics_port=port, log_format="json"),
                          tmp_path / "worker.log", env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    try:
        wait_for_port("127.0.0.1", port, timeout=60, process=worker)
        job_id = client.post("/v1/jobs", data={"image": (io.BytesIO(image_bytes()), "a.png"), "model": "bicubic",
                                               "scale": "2"}, content_type="multipart/form-data").get_json()["id"]
        assert wait_for(client, job_id)["status"] == "succeeded"
        worker_metrics = _scrape_until(f"http://127.0.0.1:{port}/metrics", WORKER_SERIES)
    finally:
        stop_worker(worker)
    for series in WORKER_SERIES:
        assert series in worker_metrics, series
    api_metrics = client.get("/metrics").get_data(as_text=True)
    assert 'upscaler_http_requests_total{method="POST",route="/v1/jobs",status="202"}' in api_metrics
    assert 'upscaler_jobs_submitted_total{model="bicubic",scale="2"}' in api_metrics
    assert 'upscaler_queue_depth{queue="inference"}' in api_metrics
    lines = [json.loads(line) for line in (tmp_path / "worker.log").read_text().splitlines() if line.startswith("{")]
    job_lines = [line for line in lines if line.get("job_id") == job_id]
    assert any("succeeded" in line["message"] for line in job_lines)
