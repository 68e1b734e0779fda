"""How a job looks in JSON: one body for ``GET /v1/jobs/<id>``, list items and webhook payloads.

It lives in ``shared`` because both the API (responses) and the worker (webhook payloads) render it.
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import unquote, urlencode

from pydantic import BaseModel, ConfigDict, Field

from shared.events import wanted_events
from shared.limits import EXTENSIONS, OUTPUT_FORMATS
from shared.models import Job
from shared.settings import Settings
from shared.signing import signed_query
from shared.states import JobStatus
from shared.storage import Storage, StorageError

log = logging.getLogger(__name__)


class ImageInfo(BaseModel):
    width: int | None = Field(None, description="None until known (an image_url input before the worker fetched it).")
    height: int | None = None
    bytes: int | None = None
    format: str | None = None
    filename: str | None = Field(None, description="Input: the uploaded name. Output: the name the result downloads "
                                                   "under (input stem and size, e.g. photo_x4.png), once succeeded.")
    url: str | None = Field(None, description="The image_url the input was fetched from, if any.")


class JobError(BaseModel):
    code: str = Field(description="Stable machine-readable code (docs/errors.md).")
    message: str


class InputMeasured(BaseModel):
    format: str
    lossy: bool = Field(description="The file's format is lossy (JPEG, lossy WebP, AVIF, HEIC).")
    jpeg_quality: int | None = Field(None, description="A JPEG's, estimated from its quantization tables (libjpeg's "
                                                       "quality scale).")
    noise_sigma: float = Field(description="Estimated luma noise (0..255 scale).")
    colour_noise_sigma: float = Field(0.0, description="Estimated per-channel noise seen in the colour differences "
                                                       "(0..255 scale; about 0 for clean photos and grey noise).")
    white_noise_sigma: float | None = Field(
        None, description="Luma noise read at two scales, the part that is white (about 0 for a clean photo however "
                          "textured); null for an image too small to tell (under about 180x180 px).")
    quantizer: float | None = Field(
        None, ge=0, le=255, description="The encoder's quantizer index, read from the file's own headers where its "
                                        "format records one and has no JPEG quality: a lossy WebP's mean VP8 luma "
                                        "index (0 finest .. 127), an AVIF's AV1 base_q_idx (0 .. 255), a HEIC's "
                                        "HEVC slice QP (0 .. 51); it sets the strength.")
    jpeg_grid: list[int] | None = Field(
        None, min_length=2, max_length=2,
        description="A JPEG's, or a decoded JPEG's: where the 8x8 block grid lies in the upright image (row, col of "
                    "its top-left pixel inside its block).")
    earlier_jpeg_quality: int | None = Field(
        None, ge=1, le=100, description="An earlier JPEG encode found in the pixels (by the lattice their DCT "
                                        "coefficients sit on): a lossless file holding a decoded JPEG (a JPEG saved "
                                        "again as PNG, a crop or screenshot of one), or a JPEG saved again at a "
                                        "finer quality than it was first. Its quality (libjpeg's scale) sets the "
                                        "strength and jpeg_grid is its grid; null where none was found.")
    stroke_ratio: float | None = Field(
        None, description="A lossy file's flattest blocks read at half resolution over their median at full: 1.8 or "
                          "more says noise_sigma reads the edges of strokes (a page of text), not noise, so it does "
                          "not raise the strength (and, with noise_sigma 6 or more, a JPEG of quality 94 to 96 "
                          "goes to the fidelity network); null for a lossless file (not holding a decoded JPEG) or an "
                          "image under about 180x180 px.")


class Ran(BaseModel):
    model: str = Field(description="The network that ran (auto resolves per input); `resample` where the size asked "
                                   "needed no enlargement and no network ran.")
    strength: float | None = Field(None, description="Restoration strength it ran with (conditioned networks).")
    reason: str
    input: InputMeasured
    network_scales: list[int] = Field(default_factory=list,
                                      description="The network scales that ran in turn (x8 is 4 then 2).")
    resampled: bool = Field(False, description="The network's output was resized or cropped to the exact size.")
    precision: str | None = Field(None, description="What the network computed in on the worker: float32, or "
                                                    "bfloat16 where its CPU has native bf16; null for bicubic.")
    bands: int = Field(0, description="Bands the output was computed and streamed in (0: whole in memory).")
    bits: int = Field(8, description="Bits per sample of the output: 16 for a 16-bit PNG/TIFF input at x2/x3/x4 "
                                     "to PNG or TIFF, else 8.")


class Bands(BaseModel):
    done: int
    total: int


class JobLinks(BaseModel):
    self: str
    result: str | None = Field(None, description="Redirects (S3) or streams (local) the result once succeeded; "
                                                 "null again once the retention period removed it.")


EXAMPLE_JOB = {
    "id": "1f0e3c6f0a2d4c55a6d0d6f4c1b2a3e4", "status": "succeeded", "progress": 1.0, "model": "auto",
    "denoise": "auto", "scale": 4, "width": None, "height": None, "fit": None, "dpi": None, "output_format": "webp",
    "quality": 85, "webhook_url": None, "webhook_events": None, "attempts": 1,
    "ran": {"model": "residual_sr_cond", "strength": 0.357, "reason": "JPEG quality 75",
            "input": {"format": "JPEG", "lossy": True, "jpeg_quality": 75, "noise_sigma": 2.31,
                      "colour_noise_sigma": 0.42, "white_noise_sigma": 0.0, "quantizer": None,
                      "jpeg_grid": [0, 0], "earlier_jpeg_quality": None, "stroke_ratio": 1.12},
            "network_scales": [4], "resampled": False, "precision": "bfloat16", "bands": 0, "bits": 8},
    "created_at": "2026-11-25T21:10:00Z", "updated_at": "2026-11-25T21:10:13Z",
    "started_at": "2026-11-25T21:10:01Z", "finished_at": "2026-11-25T21:10:13Z",
    "input": {"width": 1200, "height": 800, "bytes": 245112, "format": "jpeg", "filename": "photo.jpg", "url": None},
    "output": {"width": 4800, "height": 3200, "bytes": 9123456, "format": "webp", "filename": "photo_x4.webp",
               "url": None},
    "result_url": "https://upscale.example.com/v1/files/results/Xq1…/Yz2….webp?expires=1795647600&signature=…",
    "result_url_expires_at": "2026-11-25T22:10:13Z", "expired_at": None, "error": None,
    "timings": {"download_s": 0.01, "decode_s": 0.03, "inference_s": 11.2, "encode_s": 0.9, "upload_s": 0.05,
                "total_s": 12.3},
    "queue_position": None, "split": None,
    "links": {"self": "/v1/jobs/1f0e3c6f0a2d4c55a6d0d6f4c1b2a3e4",
              "result": "/v1/jobs/1f0e3c6f0a2d4c55a6d0d6f4c1b2a3e4/result"},
}


class JobOut(BaseModel):
    """A job as the API shows it."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_JOB]})

    id: str
    status: Literal["queued", "running", "succeeded", "failed", "canceled"]
    progress: float = Field(ge=0, le=1)
    model: str = Field(description="The model asked for (may be 'auto'); `ran` says which network ran.")
    denoise: float | Literal["auto"]
    ran: Ran | None = Field(None, description="Set once the job ran: network, strength and what the input measured.")
    scale: float | None = Field(description="The factor asked for (None when width/height were given).")
    width: int | None = Field(None, description="The output width asked for, if any.")
    height: int | None = Field(None, description="The output height asked for, if any.")
    fit: str | None = Field(None, description="contain, cover or fill, when both width and height were given.")
    dpi: int | None = Field(None, description="Resolution written into the output, if asked for (else the input's "
                                              "DPI times the enlargement).")
    output_format: str
    quality: int | None
    webhook_url: str | None
    webhook_events: list[str] | None = Field(None, description="Events sent to webhook_url.")
    attempts: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    input: ImageInfo
    output: ImageInfo = Field(description="Width/height are known at submit; bytes once the job succeeded.")
    result_url: str | None = Field(None, description="Direct, expiring download URL once succeeded.")
    result_url_expires_at: datetime | None = None
    expired_at: datetime | None = Field(None, description="When input and result were deleted: by the retention "
                                                          "period, or by DELETE /v1/jobs/{id}.")
    error: JobError | None
    timings: dict[str, float] | None = Field(None, description="Seconds per pipeline stage.")
    queue_position: int | None = Field(None, description="While queued (GET of one job): how many jobs of every "
                                       "tenant wait ahead of it, counting it (1 = next); fair scheduling may "
                                       "reorder them, so it is an estimate.")
    split: Bands | None = Field(None, description="A split job: its bands, run by every free worker, done so far.")
    links: JobLinks




def result_filename(job: Job) -> str:
    """The name a result downloads under: the input's stem and what was done, e.g. ``photo_x4.png`` or
    ``scan_3000x2000.tif`` (letters and digits of any script, ``-``, ``_`` and ``.``: ASCII alone turned
    ``写真-001.jpg`` into ``-001_x2.png`` and a batch of Japanese names into one ``image_x2.png`` after another)."""
    source = job.input_filename or (job.input_url or "").rsplit("/", 1)[-1].split("?", 1)[0]
    source = unicodedata.normalize("NFC", unquote(source) if not job.input_filename else source)
    stem = re.sub(r"[^\w.-]+", "_", source.rsplit(".", 1)[0] if "." in source else source).strip("._")
    if job.scale and not (job.target_width or job.target_height):
        size = f"x{job.scale:g}"
    else:
        size = f"{job.output_width}x{job.output_height}"
    return f"{(stem or 'image')[:80]}_{size}.{EXTENSIONS[job.output_format]}"


def result_available(job: Job) -> bool:
    """Whether a job has a result to fetch: succeeded, and not yet removed by the retention period (an expired
    job's ``links.result`` pointed at a 410)."""
    return job.status == JobStatus.SUCCEEDED.value and bool(job.output_key) and not job.expired_at


def result_link(job: Job, storage: Storage, settings: Settings, base_url: str,
                ttl: int | None = None) -> tuple[str, datetime] | None:
    """A direct, expiring URL for a succeeded job's result: presigned S3 or a signed API link, valid for
    ``ttl`` seconds (default ``result_url_ttl``), or as long as the storage can sign a link for (S3: 7 days; a
    webhook's link, which outlives its retries, was signed for longer and refused by S3)."""
    if not result_available(job):
        return None
    ttl = ttl or settings.result_url_ttl
    if storage.max_link_seconds is not None:
        ttl = min(ttl, storage.max_link_seconds)
    # in whole seconds, as both links count their life (a signed link's ``expires``, S3's X-Amz-Date): the time
    # read here with its fraction said the link lived up to a second longer than it did, so a client using it in
    # its last "valid" moment was answered 410 link_expired (S3 signs later than this second, so later, never sooner)
    issued = int(time.time())
    expires = datetime.fromtimestamp(issued + ttl, UTC)
    filename = result_filename(job)
    try:
        url = storage.presigned_url(job.output_key, ttl, filename, OUTPUT_FORMATS[job.output_format])
    except StorageError as exc:  # no link for now (result_url null, said in the docs): the job and its reader go on
        log.warning("no link to the result of job %s for now: %s", job.id, exc)
        return None
    if url is None:
        query = urlencode(signed_query(settings.secret_key, job.output_key, ttl, now=issued, name=filename))
        url = f"{base_url.rstrip('/')}/v1/files/{job.output_key}?{query}"
    return url, expires


def job_view(job: Job, storage: Storage, settings: Settings, base_url: str, with_result_url: bool = True,
             link_ttl: int | None = None) -> JobOut:
    """Render a job. ``base_url`` prefixes its result link (``UPSCALER_PUBLIC_URL`` or the request's host);
    ``links`` are absolute where ``UPSCALER_PUBLIC_URL`` is set (a webhook payload's, read outside any request,
    were paths of no host), paths otherwise. ``link_ttl`` is how long its result link lives (default
    ``result_url_ttl``)."""
    link = result_link(job, storage, settings, base_url, link_ttl) if with_result_url else None
    api = settings.public_url.rstrip("/")
    succeeded = job.status == JobStatus.SUCCEEDED.value
    return JobOut(
        id=job.id, status=job.status, progress=round(job.progress, 4), model=job.model,
        denoise="auto" if job.denoise is None else job.denoise, ran=job.ran, scale=job.scale,
        width=job.target_width, height=job.target_height, fit=job.fit, dpi=job.dpi,
        output_format=job.output_format, quality=job.quality, webhook_url=job.webhook_url,
        webhook_events=list(wanted_events(job)) if job.webhook_url else None, attempts=job.attempts,
        created_at=job.created_at, updated_at=job.updated_at, started_at=job.started_at, finished_at=job.finished_at,
        input=ImageInfo(width=job.input_width, height=job.input_height, bytes=job.input_bytes,
                        format=job.input_format, filename=job.input_filename, url=job.input_url),
        output=ImageInfo(width=job.output_width, height=job.output_height, bytes=job.output_bytes,
                         format=job.output_format, filename=result_filename(job) if succeeded else None),
        result_url=link[0] if link else None,
        result_url_expires_at=link[1] if link else None,
        expired_at=job.expired_at,
        error=JobError(code=job.error_code, message=job.error_message or "") if job.error_code else None,
        timings=job.timings,
        split=Bands(done=job.bands_done, total=job.bands_total) if job.bands_total else None,
        links=JobLinks(self=f"{api}/v1/jobs/{job.id}",
                       result=f"{api}/v1/jobs/{job.id}/result" if result_available(job) else None),
    )
