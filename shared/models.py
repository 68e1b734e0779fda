"""ORM models: they hold and persist data only (no Redis, storage or Celery calls in here)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from shared.sizing import SizeRequest
from shared.states import JobStatus

PUBLIC_TENANT = "public"  # the tenant of an open (key-less) development API


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    """Random, unguessable job id (128 bits)."""
    return uuid.uuid4().hex


def could_be_job_id(text: str) -> bool:
    """Whether ``text`` may name a job, checked before it reaches a query: ours are 32 hex digits, and anything
    long or unprintable (a NUL, which PostgreSQL refuses in text: a 500) names none."""
    return len(text) <= 64 and text.isascii() and text.isprintable()


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given; use shared.models.utcnow()")
        return value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        """In UTC, whatever the connection's zone: PostgreSQL answers in its session's ``TimeZone`` (a server set to
        a local zone gave the API ``-04:00`` times, and cursors and messages with them); SQLite stores naive UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Job(Base):
    """One upscale request and everything learned while running it."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_created_id", "created_at", "id"),
        Index("ix_jobs_status_created", "status", "created_at"),
        Index("ix_jobs_tenant_created_id", "tenant", "created_at", "id"),
        Index("ix_jobs_tenant_started", "tenant", "started_at"),  # fair turns: a waiting tenant's recent starts
        # the active-job limit, counted at every submit, and a fair turn's pick of a tenant's oldest queued job
        Index("ix_jobs_tenant_status_created", "tenant", "status", "created_at", "id"),
        # the orphan sweep asks which stored keys a job names (shared.jobs.referenced_keys)
        Index("ix_jobs_input_key", "input_key"),
        Index("ix_jobs_output_key", "output_key"),
        Index("ix_jobs_staged_output_key", "staged_output_key"),
        # retention's oldest ended jobs not yet expired: rows stay after expiry, and every sweep read them all
        Index("ix_jobs_retention", "finished_at", "id", postgresql_where=text("expired_at IS NULL"),
              sqlite_where=text("expired_at IS NULL")),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_job_id)
    # Whose job: the tenant of the API key that submitted it (shared.tenants). Every read filters on it.
    tenant: Mapped[str] = mapped_column(String(64), default=PUBLIC_TENANT, server_default=PUBLIC_TENANT)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    # The size asked for (shared.sizing): a factor, or a target width and/or height with a fit.
    scale: Mapped[float | None] = mapped_column(Float)
    target_width: Mapped[int | None] = mapped_column(Integer)
    target_height: Mapped[int | None] = mapped_column(Integer)
    fit: Mapped[str | None] = mapped_column(String(8))
    model: Mapped[str] = mapped_column(String(64))
    output_format: Mapped[str] = mapped_column(String(8))
    quality: Mapped[int | None] = mapped_column(Integer)
    # Restoration strength asked for (0..1); None means auto (from the input file).
    denoise: Mapped[float | None] = mapped_column(Float)
    # Resolution to write into the output (pixels per inch); None keeps the input's print size.
    dpi: Mapped[int | None] = mapped_column(Integer)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_events: Mapped[list[str] | None] = mapped_column(JSON)

    input_key: Mapped[str] = mapped_column(String(255))
    # Set when the client gave ``image_url``: the worker fetches it into ``input_key`` and only then knows the
    # format, bytes and size below (None until then).
    input_url: Mapped[str | None] = mapped_column(Text)
    input_format: Mapped[str | None] = mapped_column(String(16))
    input_filename: Mapped[str | None] = mapped_column(String(255))
    input_bytes: Mapped[int | None] = mapped_column(BigInteger)  # 64-bit: a PostgreSQL integer stops at 2 GiB
    input_width: Mapped[int | None] = mapped_column(Integer)
    input_height: Mapped[int | None] = mapped_column(Integer)

    output_key: Mapped[str | None] = mapped_column(String(255))
    # Written before a result is uploaded: if that attempt dies, the next one deletes the orphan object.
    staged_output_key: Mapped[str | None] = mapped_column(String(255))
    output_bytes: Mapped[int | None] = mapped_column(BigInteger)  # a 1,000 MP 16-bit poster passes 2 GiB
    output_width: Mapped[int | None] = mapped_column(Integer)
    output_height: Mapped[int | None] = mapped_column(Integer)

    progress: Mapped[float] = mapped_column(Float, default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # An attempt that object storage being unreachable stopped (shared.jobs.hand_back): not before when the job
    # may run again, and since when such outages have kept it from finishing (it fails after a grace period).
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outage_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    timings: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Which network ran at which strength, and what the input measured (worker.engine.selection).
    ran: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # A split job (worker.split): how many bands it was cut into, and how many are done. The counter is
    # moved by one conditional UPDATE per band, so exactly one worker sees the last band finish.
    bands_total: Mapped[int | None] = mapped_column(Integer)
    bands_done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    @property
    def size_request(self) -> SizeRequest:
        return SizeRequest(self.scale, self.target_width, self.target_height, self.fit or "contain")

    @property
    def awaiting_fetch(self) -> bool:
        """A job by ``image_url`` whose fetched input is not recorded yet: the worker fetches (and charges) it, and
        until then the quota notes its attempts' charges (``shared.quota``)."""
        return self.input_url is not None and self.input_bytes is None
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # What the job was charged against its tenant's daily quota, and when (shared.quota): None when nothing was
    # (no quota, Redis unreachable, not fetched yet) or once it has been given back.
    charged_megapixels: Mapped[float | None] = mapped_column(Float)
    charged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class JobBand(Base):
    """One band of a split job: LR rows ``y0..y1`` of its tile cores, run as its own task under its own lease."""

    __tablename__ = "job_bands"
    __table_args__ = (Index("ix_job_bands_status_updated", "status", "updated_at"),
                      Index("ix_job_bands_result_key", "result_key"))

    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    y0: Mapped[int] = mapped_column(Integer)
    y1: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, running, done
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Written before the band's pixels are uploaded, so whoever cleans up finds every object.
    result_key: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiKey(Base):
    """A customer's API key: stored as a SHA-256 of a high-entropy secret (shown once), with its limits.

    The key's ``name`` is its tenant: every job the key submits belongs to that name.
    """

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_job_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rate_limit: Mapped[int | None] = mapped_column(Integer)  # requests per minute; None = the setting's default
    max_active: Mapped[int | None] = mapped_column(Integer)  # queued + running jobs
    daily_megapixels: Mapped[int | None] = mapped_column(Integer)  # output megapixels per UTC day
    # its webhook signing secret's version (``shared.webhooks.signing_secret``; 0: as derived before rotation
    # existed) and until when the previous version still signs too
    webhook_secret_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    webhook_secret_previous_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class IdempotencyKey(Base):
    """A client's ``Idempotency-Key`` and the job its first request created.

    ``key`` is a SHA-256 of the tenant and the client's key, so two tenants' equal keys never meet.
    """

    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class WebhookDelivery(Base):
    """One webhook message (an event of a job); retried until delivered, refused or out of attempts.

    The payload is frozen when the event happens, so every attempt (and a redelivery) sends the same body
    under the same ``webhook-id``.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
                      # the attempts being made (a handful): a tenant's are counted before each attempt
                      Index("ix_webhook_deliveries_leased", "leased_until",
                            postgresql_where=text("leased_until IS NOT NULL"),
                            sqlite_where=text("leased_until IS NOT NULL")))

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # every attempt ever claimed
    retries_from: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # attempts at its redelivery
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime())  # an attempt claimed, not yet recorded
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class WebhookAttempt(Base):
    """One HTTP attempt at delivering a webhook message."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(String(40), ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
                                             index=True)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
