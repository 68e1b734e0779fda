"""Request and response schemas. The same classes validate requests and generate the OpenAPI document."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

from shared.errors import API_ERRORS
from shared.events import EVENTS
from shared.job_view import JobOut
from shared.limits import OUTPUT_FORMATS, QUALITY_RANGE
from shared.sizing import (
    DPI_RANGE,
    FITS,
    MAX_FACTOR,
    MAX_PRINT_LENGTH,
    MAX_TARGET_SIDE,
    MIN_FACTOR,
    PRINT_UNITS,
    SizeRequest,
    requested_size,
    size_conflict,
)

_EVENT = "(" + "|".join(re.escape(event) for event in EVENTS) + ")"


class BlankIsDefault(BaseModel):
    """A form or query whose empty fields mean their defaults."""

    @model_validator(mode="before")
    @classmethod
    def _empty_is_absent(cls, values):
        """An empty field means its default, for every field of every form and query: a page's blank input or
        unset select sends one, as does a client that builds ``?status=&limit=`` from unset variables (a blank
        format, fit or print_unit was refused while a blank quality or scale was not; a blank list filter was 422)."""
        if isinstance(values, dict):
            return {name: value for name, value in values.items() if value != ""}
        return values


class JobCreateForm(BlankIsDefault):
    """multipart/form-data fields of ``POST /v1/jobs`` (the file goes in ``image``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"scale": 4, "format": "webp", "quality": 85}, {"width": 3000, "height": 2000, "fit": "cover"},
        {"scale": 2, "model": "residual_sr_cond", "denoise": 0.5,
         "webhook_url": "https://example.com/hooks/upscaler", "webhook_events": "job.succeeded,job.failed"}]})

    # allow_inf_nan=False: "nan" was told "should be less than or equal to 8", as if it were a number too large
    scale: float | None = Field(None, ge=MIN_FACTOR, le=MAX_FACTOR, allow_inf_nan=False,
                                description="Enlargement factor, 1 to 8, fractions allowed (default 4 when no width or "
                                            "height is given). The network runs at the smallest of x2/x3/x4 (x8 as "
                                            "x4 then x2) that reaches it; the result is resampled to the exact size.")
    width: int | None = Field(None, ge=1, le=MAX_TARGET_SIDE, description="Output width in pixels (instead of scale).")
    height: int | None = Field(None, ge=1, le=MAX_TARGET_SIDE,
                               description="Output height in pixels (instead of scale).")
    fit: Literal[FITS] = Field(  # type: ignore[valid-type]
        "contain", description="With both width and height: contain keeps the aspect inside the box, cover fills it "
                               "and crops the overflow evenly, fill stretches to exactly that size.")
    dpi: int | None = Field(None, ge=DPI_RANGE[0], le=DPI_RANGE[1],
                            description="Resolution written into the output (pixels per inch). Default: the input's "
                                        "own DPI times the enlargement, so the print size stays the same.")
    print_width: float | None = Field(None, gt=0, le=MAX_PRINT_LENGTH, allow_inf_nan=False,
                                      description="With dpi: the print width in print_unit; the output width in "
                                                  "pixels is print_width x dpi (instead of scale or width).")
    print_height: float | None = Field(None, gt=0, le=MAX_PRINT_LENGTH, allow_inf_nan=False,
                                       description="With dpi: the print height in print_unit.")
    print_unit: Literal[PRINT_UNITS] = Field(  # type: ignore[valid-type]
        "in", description="Unit of print_width and print_height.")
    format: Literal[tuple(OUTPUT_FORMATS)] = Field(  # type: ignore[valid-type]
        "png", description="Output image format: png, jpeg (sides up to 65500 px), webp (up to 16383 px), avif (up "
                           "to 16384 px and 67 MP), or tiff (Deflate-compressed, for print).")
    quality: int | None = Field(None, ge=QUALITY_RANGE[0], le=QUALITY_RANGE[1],
                                description="JPEG/WebP/AVIF quality (default 92 / 90 / 75).")
    model: str | None = Field(None, max_length=64,
                              description="Model name from GET /v1/models (default: the server's default, 'auto', "
                                          "which picks the fidelity network for clean files and the robust one for "
                                          "compressed or noisy files; 'bicubic' is the baseline).")
    denoise: Annotated[float, Field(ge=0.0, le=1.0)] | Literal["auto"] = Field(
        "auto", description="Restoration strength, 0 (keep every detail) to 1 (strongest clean-up of JPEG "
                            "artefacts and noise), or 'auto' to measure it from the file (its JPEG quality or "
                            "the quantizer in its WebP, AVIF or HEIC header, its noise). "
                            "Only for models whose `denoise` is true in GET /v1/models.")
    image_url: HttpUrl | None = Field(None, description="Instead of the 'image' file: an http(s) address the worker "
                                                        "fetches the image from (public addresses only; redirects "
                                                        "re-checked; size and time capped).")
    webhook_url: HttpUrl | None = Field(None, description="Receives signed event POSTs (docs/webhooks.md).")
    webhook_events: str | None = Field(
        None, pattern=rf"^\s*{_EVENT}(\s*,\s*{_EVENT})*\s*$",
        description=f"Comma-separated (or repeated) events to send: {', '.join(EVENTS)}. "
                    "Default: the three terminal ones.")

    @model_validator(mode="after")
    def _one_way_to_size(self):
        conflict = size_conflict(self.scale, self.width, self.height, self.print_width, self.print_height, self.dpi)
        if conflict:
            raise ValueError(conflict)
        return self

    @property
    def size(self) -> SizeRequest:
        return requested_size(self.scale, self.width, self.height, self.fit, print_width=self.print_width,
                              print_height=self.print_height, print_unit=self.print_unit, dpi=self.dpi)

    @field_validator("webhook_events", mode="before")
    @classmethod
    def _known_events(cls, value):
        """Name the event that is not one (the pattern's own message was the regular expression)."""
        if isinstance(value, str):
            unknown = [event.strip() for event in value.split(",") if event.strip() not in EVENTS]
            if unknown:  # a blank one too (" " was answered with the pattern, a regular expression)
                raise ValueError(f"{unknown[0]!r} is not an event; the events are {', '.join(EVENTS)}")
        return value

    @field_validator("denoise", mode="before")
    @classmethod
    def _denoise(cls, value):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
            return "auto"
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError("must be 'auto' or a number from 0 to 1") from None
        if not 0.0 <= number <= 1.0:
            raise ValueError("must be 'auto' or a number from 0 to 1")
        return number + 0.0  # "-0" is 0: the job said "denoise": -0.0

    @property
    def denoise_value(self) -> float | None:
        """The strength as stored on the job: None means auto."""
        return None if self.denoise == "auto" else float(self.denoise)

    def event_list(self) -> list[str] | None:
        if not self.webhook_events:
            return None
        return sorted({event.strip() for event in self.webhook_events.split(",")})


class JobListQuery(BlankIsDefault):
    model_config = ConfigDict(extra="forbid")

    status: Literal["queued", "running", "succeeded", "failed", "canceled"] | None = None
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = Field(None, max_length=200, description="next_cursor of the previous page.")


class FileLinkQuery(BaseModel):
    """The signed link's parameters (``shared.job_view.result_link`` makes them); a missing or wrong one is
    403 ``invalid_signature``, not a validation error, so a forged link learns nothing more."""

    expires: str = Field("", description="Unix time the link stops working (signed).")
    signature: str = Field("", description="HMAC of the key, expiry and name.")
    name: str | None = Field(None, description="The file name the download is saved under (signed).")


class RedeliverQuery(BlankIsDefault):
    delivery_id: str | None = Field(None, description="The message to send again (msg_...); default: the latest.")


class JobPage(BaseModel):
    data: list[JobOut]
    next_cursor: str | None


class ModelOut(BaseModel):
    name: str
    arch: str = Field(description="Registered architecture, 'route' for auto, 'bicubic' for the baseline.")
    scales: list[int]
    description: str
    denoise: bool = Field(description="Whether jobs with this model take a denoise strength.")
    parameters: dict[str, int]
    benchmark_psnr_y: dict[str, dict[str, dict[str, float]]] = Field(
        description="Y-PSNR (dB) by protocol (the `upscaler eval --degradation` names: clean, jpeg75, noise_jpeg90, "
                    "...), set and scale; "
                    "`<set>` is the model, `<set>_bicubic` the baseline on the same inputs (docs/model.md).")
    training_degradation: dict | None = Field(None, description="The damage the network was trained on.")
    routes: dict[str, str] | None = Field(None, description="auto only: which network serves clean and damaged "
                                                            "inputs.")
    default: bool


class ModelList(BaseModel):
    data: list[ModelOut]


class Problem(BaseModel):
    """RFC 9457 problem details with a stable ``code``."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "type": "/docs/errors#output_too_large", "title": API_ERRORS["output_too_large"].title, "status": 422,
        "code": "output_too_large",
        "detail": "jpeg images cannot exceed 65500 px a side; the output would be 80000x60000"}]})

    type: str
    title: str
    status: int
    code: str
    detail: str
    field: str | None = Field(None, description="invalid_parameter, *_url_refused: the form field at fault.")
    limit: int | None = Field(None, description="The limit that was reached (429s, image_too_large).")
    available: list[str] | None = Field(None, description="unknown_model: the models to choose from.")
    job_status: str | None = Field(None, description="result_not_ready, not_cancelable: where the job is.")
    request_id: str | None = Field(None, description="This request's id, as in the X-Request-Id header: quote it to "
                                                     "the operator.")


class Health(BaseModel):
    status: Literal["ok", "degraded", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)
