"""``upscaler keys create|list|set-limits|rotate|revoke|webhook-secret|rotate-webhook-secret``: API keys (tenants)
as data, in the database the API uses, and each tenant's webhook signing secret."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cli.arguments import grace_hours, key_limit, limit_or_default

if TYPE_CHECKING:
    from celery import Celery
    from sqlalchemy.orm import Session, sessionmaker

    from shared.settings import Settings
    from shared.storage import Storage


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="create, list and revoke API keys (one tenant per key name)")
    actions = p.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a key; it is printed once, alone on the last line")
    create.add_argument("--name", required=True, help="the tenant: every job the key submits belongs to it")
    create.add_argument("--rate-limit", type=key_limit, default=None,
                        help="requests per minute (0: unlimited; default: the setting)")
    create.add_argument("--max-active", type=key_limit, default=None,
                        help="queued + running jobs (0: unlimited; default: the setting)")
    create.add_argument("--daily-megapixels", type=key_limit, default=None,
                        help="output megapixels per UTC day (0: unlimited; default: the setting)")
    create.set_defaults(func=run_create)
    limits = actions.add_parser("set-limits", help="change the limits a key carries; its secret stays (a customer's "
                                                   "new plan takes no new key)")
    limits.add_argument("name")
    for option, what in (("--rate-limit", "requests per minute"), ("--max-active", "queued + running jobs"),
                         ("--daily-megapixels", "output megapixels per UTC day")):
        limits.add_argument(option, type=limit_or_default, default=UNSET,
                            help=f"{what} (0: unlimited; 'default': the setting; not given: unchanged)")
    limits.set_defaults(func=run_set_limits)
    actions.add_parser("list", help="name, prefix, created, last used, limits, revoked").set_defaults(func=run_list)
    revoke = actions.add_parser("revoke", help="revoke a key at once (its jobs stay its tenant's)")
    revoke.add_argument("name")
    revoke.add_argument("--cancel-jobs", action="store_true",
                        help="also cancel the tenant's queued and running jobs (a leaked key's, a customer who left): "
                             "each sends job.canceled, and one no worker had started gives its quota back; without "
                             "it they run to the end")
    revoke.set_defaults(func=run_revoke)
    rotate = actions.add_parser("rotate", help="a new secret for a key (the old one stops working at once)")
    rotate.add_argument("name")
    rotate.set_defaults(func=run_rotate)
    webhook = actions.add_parser("webhook-secret", help="print the whsec_ secret a tenant's receivers verify its "
                                 "webhook messages with (also GET /v1/webhooks/secret with its key)")
    webhook.add_argument("name", help="a key's name, public (the open development API) or env-... (a bootstrap key)")
    webhook.set_defaults(func=run_webhook_secret)
    rotate_webhook = actions.add_parser(
        "rotate-webhook-secret", help="a new whsec_ secret for a key's tenant (also POST /v1/webhooks/secret/rotate); "
                                      "the previous one goes on signing for --grace-hours, both signatures in each "
                                      "message, so receivers switch without a gap")
    rotate_webhook.add_argument("name")
    rotate_webhook.add_argument("--grace-hours", type=grace_hours, default=24,
                                help="how long the previous secret also signs (0: it stops at once; at most 8760, "
                                     "a year; default 24)")
    rotate_webhook.set_defaults(func=run_rotate_webhook_secret)


@dataclass(frozen=True)
class _Platform:
    """What a job transition needs (``shared.transitions.Platform``), for the jobs ``revoke --cancel-jobs`` ends."""

    sessions: sessionmaker[Session]
    celery: Celery
    storage: Storage
    settings: Settings


def _sessions():
    from shared.db import make_engine, make_session_factory
    from shared.settings import Settings

    return make_session_factory(make_engine(Settings.from_env(secret=False).database_url))


def run_create(args: argparse.Namespace) -> int:
    from shared.db import unit_of_work
    from shared.tenants import InvalidKeyName, KeyExists, create_key

    try:
        with unit_of_work(_sessions()) as session:
            row, token = create_key(session, args.name, args.rate_limit, args.max_active, args.daily_megapixels)
    except KeyExists:
        print(f"upscaler keys: {args.name!r} has an active key; 'upscaler keys rotate {args.name}' gives it a new "
              "secret", file=sys.stderr)
        return 1
    except InvalidKeyName as exc:
        print(f"upscaler keys: {exc}", file=sys.stderr)
        return 2
    print(f"created key {row.name!r} (prefix {row.prefix}); store it now, it is not shown again:")
    print(token)
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    from shared.db import unit_of_work
    from shared.tenants import rotate_key

    with unit_of_work(_sessions()) as session:
        rotated = rotate_key(session, args.name)
        if rotated is None:
            print(f"upscaler keys: no active key named {args.name!r}", file=sys.stderr)
            return 1
        row, token = rotated
        prefix = row.prefix
    print(f"new secret for {args.name!r} (prefix {prefix}); the old one no longer works. Store it now:")
    print(token)
    return 0


UNSET = object()  # argparse's default for a set-limits option not given (a string default is parsed by its type)


def run_set_limits(args: argparse.Namespace) -> int:
    from shared.db import unit_of_work
    from shared.tenants import UNCHANGED, set_limits

    asked = {name: UNCHANGED if getattr(args, name) is UNSET else getattr(args, name)
             for name in ("rate_limit", "max_active", "daily_megapixels")}
    with unit_of_work(_sessions()) as session:
        row = set_limits(session, args.name, **asked)
        if row is None:
            print(f"upscaler keys: no active key named {args.name!r}", file=sys.stderr)
            return 1
        said = (f"rate/min {_limit(row.rate_limit)}, active {_limit(row.max_active)}, "
                f"MP/day {_limit(row.daily_megapixels)}")
    print(f"limits of {args.name!r}: {said} (from its next request; its key is unchanged)")
    return 0


def _limit(value: int | None) -> str:
    return "default" if value is None else str(value)


def run_list(args: argparse.Namespace) -> int:
    from shared.tenants import list_keys

    with _sessions()() as session:
        rows = list_keys(session)
    print(f"{'name':20} {'prefix':14} {'created':20} {'last used':20} {'rate/min':>8} {'active':>7} "
          f"{'MP/day':>7} revoked")
    for r in rows:
        when = lambda t: t.strftime("%Y-%m-%d %H:%M") if t else "-"  # noqa: E731
        print(f"{r.name:20} {r.prefix:14} {when(r.created_at):20} {when(r.last_used_at):20} "
              f"{_limit(r.rate_limit):>8} {_limit(r.max_active):>7} {_limit(r.daily_megapixels):>7} "
              f"{when(r.revoked_at)}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from shared.db import unit_of_work
    from shared.jobs import lock_tenant
    from shared.models import ApiKey
    from shared.tenants import revoke_key

    sessions = _sessions()
    with unit_of_work(sessions) as session:
        # under the tenant's lock, which a submit holds from its key's last check to its job's insert: a job is
        # either stored before this (and found below) or refused after it
        lock_tenant(session, args.name)
        revoked = revoke_key(session, args.name)
        known = revoked or session.scalar(select(ApiKey.id).where(ApiKey.name == args.name).limit(1)) is not None
    if not revoked and not (args.cancel_jobs and known):  # a revoked key's jobs may still be canceled after
        print(f"upscaler keys: no active key named {args.name!r}", file=sys.stderr)  # as its other errors say
        return 1
    print(f"revoked {args.name!r}" if revoked else f"{args.name!r} was already revoked")
    if args.cancel_jobs:
        print(f"canceled {_cancel_jobs_of(sessions, args.name)} queued or running job(s) of {args.name!r}")
    return 0


def _cancel_jobs_of(sessions: sessionmaker[Session], tenant: str) -> int:
    """Cancel the tenant's queued and running jobs as the API's cancel does (a running one stops at its next
    lease renewal); how many were canceled."""
    from shared.jobs import active_job_ids
    from shared.queue import make_celery
    from shared.settings import Settings
    from shared.storage import make_storage
    from shared.transitions import cancel_job

    settings = Settings.from_env()
    platform = _Platform(sessions, make_celery(settings, publisher=True), make_storage(settings), settings)
    with sessions() as session:
        ids = active_job_ids(session, tenant)
    return sum(cancel_job(platform, job_id) is not None for job_id in ids)


def _signing_settings():
    """The settings webhook secrets are derived with, or None (said) where the API's secret is not to be found:
    the development secret lives in the API's own folder, and made afresh here a secret was printed (or, by
    ``rotate-webhook-secret``, rotated and printed) that no message is signed with, and a stray file left behind."""
    from shared.settings import Settings

    # what is configured, before a development secret is read or made
    bare = Settings.from_env(secret=False)
    if not (os.environ.get("UPSCALER_SECRET_KEY") or bare.webhook_secret or bare.secret_file.exists()):
        print(f"upscaler keys: no development secret at {bare.secret_file}; run this where the API runs, or set "
              "UPSCALER_SECRET_FILE (or UPSCALER_SECRET_KEY) as the API has it", file=sys.stderr)
        return None
    return Settings.from_env()


def run_webhook_secret(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from shared.models import PUBLIC_TENANT, ApiKey
    from shared.tenants import env_tenant
    from shared.webhooks import tenant_secrets

    settings = _signing_settings()
    if settings is None:
        return 1
    known = {PUBLIC_TENANT, *(env_tenant(key) for key in settings.api_key_list)}
    if args.name not in known:
        with _sessions()() as session:
            known.update(session.scalars(select(ApiKey.name).where(ApiKey.name == args.name)))
    if args.name not in known:  # a typo must not print a secret nobody's messages are signed with
        print(f"upscaler keys: no tenant named {args.name!r} ('upscaler keys list' shows them)", file=sys.stderr)
        return 1
    with _sessions()() as session:
        print(tenant_secrets(session, settings, args.name).current)
    return 0


def run_rotate_webhook_secret(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from shared.db import unit_of_work
    from shared.webhooks import rotate_secret

    settings = _signing_settings()
    if settings is None:  # checked before anything is rotated
        return 1
    with unit_of_work(_sessions()) as session:
        rotated = rotate_secret(session, settings, args.name, timedelta(hours=args.grace_hours))
    if rotated is None:
        print(f"upscaler keys: no key named {args.name!r}; the open development API's tenant and bootstrap keys' "
              "secrets change only with UPSCALER_WEBHOOK_SECRET", file=sys.stderr)
        return 1
    until = (f"the previous one also signs until {rotated.previous_until:%Y-%m-%d %H:%M} UTC"
             if rotated.previous_until else "the previous one no longer signs")
    print(f"new webhook secret for {args.name!r}; {until}. Give it to its receivers:")
    print(rotated.current)
    return 0
