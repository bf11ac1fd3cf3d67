"""API clients (R-15, Art 16): interface users, their keys, their templates, their rate.

An interface user comes into being only through an executed permission application of
kind ``interface_user`` (``create_client_for_request``, called by the access area's
execute step). It gets:

- a system account (``User``) in the application's unit holding the ``api_client``
  role, with a random password nobody knows: it is the author of the client's messages
  and the actor of its audit rows;
- a key ``hxk_<8 hex>_<43 url-safe chars>`` (256 bits of randomness), returned once to
  the caller and stored only as its SHA-256 hash. The first 12 characters (the prefix)
  are stored in clear to find the row and to let people recognise a key.

The Market admin can rotate a key (a new one is shown once; the old one stops working
at once), revoke it (for good), set the client's rate and bind approved templates of
the client's unit. Every change writes an audit row in the caller's transaction.

``authenticate`` checks a bearer key in constant time and raises ``Unauthorized``
(401) for a missing, wrong or revoked key; ``check_rate`` counts the key's calls per
minute in Redis and raises ``RateLimited`` (429, with the seconds to wait).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

import redis.exceptions
from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from app.extensions import db
from app.models import ApiClient, ApiClientTemplate, MessageTemplate, Role, RoleChange, User
from app.services import audit, org
from app.services.errors import Conflict, DomainError, NotFound, PermissionDenied, ValidationError
from app.timeutil import utcnow

log = logging.getLogger(__name__)

KEY_TAG = "hxk_"
PREFIX_LENGTH = len(KEY_TAG) + 8
NAME_MAX = 100
RATE_MIN, RATE_MAX = 1, 10_000
# last_used_at is written at most this often per client (it is bookkeeping, not audit).
TOUCH_INTERVAL = timedelta(seconds=60)
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


class Unauthorized(DomainError):
    """No key, a wrong key or a revoked key (401)."""

    status = 401
    default_message = _l("Send a valid API key as Authorization: Bearer <key>.")


class RateLimited(DomainError):
    """The key made more calls this minute than its rate allows (429)."""

    status = 429
    default_message = _l("Too many requests for this key; wait before calling again.")

    def __init__(self, retry_after: int, limit: int):
        super().__init__(
            _(
                "Too many requests: this key may make %(n)s calls a minute. Try again in %(s)s seconds.",
                n=limit,
                s=retry_after,
            )
        )
        self.retry_after = retry_after
        self.limit = limit


class ServiceUnavailable(DomainError):
    """Redis, which keeps the rate counts, cannot be reached (503)."""

    status = 503
    default_message = _l("The service is briefly unavailable; try again in a few seconds.")


# ------------------------------------------------------------------ keys


def _new_key() -> tuple[str, str, str]:
    """(prefix, plain key, SHA-256 hex of the key)."""
    prefix = KEY_TAG + secrets.token_hex(4)
    plain = f"{prefix}_{secrets.token_urlsafe(32)}"
    return prefix, plain, hash_key(plain)


def hash_key(plain: str) -> str:
    return hashlib.sha256(plain.encode("utf-8")).hexdigest()


def _unique_key() -> tuple[str, str, str]:
    for _attempt in range(5):
        prefix, plain, digest = _new_key()
        taken = db.session.execute(
            select(ApiClient.id).where(ApiClient.key_prefix == prefix)
        ).first()
        if not taken:
            return prefix, plain, digest
    raise Conflict(_("Could not generate a unique key; try again."))


# ------------------------------------------------------------------ lifecycle


def _load(client_id: int, *, lock: bool = False) -> ApiClient:
    query = select(ApiClient).where(ApiClient.id == client_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    client = db.session.execute(query).scalar_one_or_none()
    if client is None:
        raise NotFound(_("No such API client."))
    return client


def _require_admin(actor: User) -> None:
    if not actor.can("admin.users"):
        raise PermissionDenied()


def create_client_for_request(access_request, actor: User) -> tuple[ApiClient, str]:
    """Create the API client an approved ``interface_user`` application asks for, while
    the access area executes it: the system account, the client and its key.

    Returns ``(client, plain_key)``; the key exists nowhere else, the caller shows it
    once. ``Conflict`` when the application is of another kind, not being executed, or
    already has a client. The caller commits (with the execution).
    """
    if access_request.kind != "interface_user":
        raise Conflict(_("Only an interface-user application creates an API client."))
    if access_request.status != "approved":
        raise Conflict(_("The application must be approved by the company before it is executed."))
    exists = db.session.execute(
        select(ApiClient.id).where(ApiClient.access_request_id == access_request.id)
    ).first()
    if exists:
        raise Conflict(_("This application already has an API client."))
    name = (access_request.person_name or "").strip()[:NAME_MAX]
    if not name:
        raise ValidationError(_("The application names no system."))
    role = db.session.execute(select(Role).where(Role.code == "api_client")).scalar_one()
    username = f"api-{access_request.id:05d}"
    n = 1
    while db.session.execute(select(User.id).where(User.username == username)).first():
        n += 1
        username = f"api-{access_request.id:05d}-{n}"
    user = org.create_user(
        username=username,
        display_name=name,
        unit=access_request.person_unit,
        # Nobody knows this password: the account exists to author the client's messages.
        password=secrets.token_urlsafe(48),
        roles=[role],
        post=access_request.person_post or "",
        must_change_password=False,
        actor=actor,
    )
    db.session.add(
        RoleChange(
            user_id=user.id,
            role_id=role.id,
            change="added",
            request_id=access_request.id,
            actor_id=actor.id,
            at=utcnow(),
        )
    )
    prefix, plain, digest = _unique_key()
    now = utcnow()
    client = ApiClient(
        name=name,
        unit_id=access_request.person_unit_id,
        user_id=user.id,
        access_request_id=access_request.id,
        key_prefix=prefix,
        key_hash=digest,
        active=True,
        rate_limit_per_minute=int(current_app.config["API_RATE_LIMIT_PER_MINUTE"]),
        created_at=now,
        created_by_id=actor.id,
        revoke_reason="",
    )
    db.session.add(client)
    db.session.flush()
    audit.record(
        "api_client.created",
        actor=actor,
        target=client,
        details={
            "request": access_request.number,
            "name": name,
            "unit_id": client.unit_id,
            "key_prefix": prefix,
            "user": username,
        },
    )
    return client, plain


def rotate(client_id: int, actor: User) -> tuple[ApiClient, str]:
    """A new key for the client, returned once; the old key stops working now."""
    _require_admin(actor)
    client = _load(client_id, lock=True)
    if not client.active:
        raise Conflict(_("A revoked key cannot be rotated; apply for a new interface user."))
    old = client.key_prefix
    prefix, plain, digest = _unique_key()
    client.key_prefix, client.key_hash = prefix, digest
    client.rotated_at, client.rotated_by_id = utcnow(), actor.id
    audit.record(
        "api_client.rotated",
        actor=actor,
        target=client,
        details={"old_prefix": old, "key_prefix": prefix},
    )
    return client, plain


def revoke(client_id: int, actor: User, reason: str) -> ApiClient:
    """Revoke the client's key for good (its messages already accepted still go out)."""
    _require_admin(actor)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError(_("Give the reason for revoking the key."), field="reason")
    client = _load(client_id, lock=True)
    if not client.active:
        raise Conflict(_("This key is already revoked."))
    client.active = False
    client.revoked_at, client.revoked_by_id = utcnow(), actor.id
    client.revoke_reason = reason[:1000]
    audit.record(
        "api_client.revoked",
        actor=actor,
        target=client,
        details={"key_prefix": client.key_prefix, "reason": reason[:200]},
    )
    return client


def set_rate(client_id: int, actor: User, per_minute) -> ApiClient:
    """Change how many calls a minute the client's key may make."""
    _require_admin(actor)
    try:
        value = int(str(per_minute).strip())
    except (TypeError, ValueError):
        value = 0
    if not RATE_MIN <= value <= RATE_MAX:
        raise ValidationError(
            _(
                "The rate is a whole number of calls a minute from %(lo)s to %(hi)s.",
                lo=RATE_MIN,
                hi=RATE_MAX,
            ),
            field="rate",
        )
    client = _load(client_id, lock=True)
    if client.rate_limit_per_minute != value:
        old = client.rate_limit_per_minute
        client.rate_limit_per_minute = value
        audit.record(
            "api_client.rate_changed",
            actor=actor,
            target=client,
            details={"old": old, "new": value},
        )
    return client


def bind(client_id: int, template_id: int, actor: User) -> ApiClientTemplate:
    """Let the client fill ``template_id``: an approved template of the client's unit."""
    _require_admin(actor)
    client = _load(client_id, lock=True)
    if not client.active:
        raise Conflict(_("This key is revoked."))
    template = db.session.get(MessageTemplate, template_id)
    if template is None:
        raise NotFound(_("No such template."))
    if template.unit_id != client.unit_id:
        # The template was approved for its own unit's messages; another unit's
        # client would send it without that unit's approval.
        raise ValidationError(_("Only templates of the client's own unit can be bound."))
    if not template.is_approved:
        raise ValidationError(_("Only approved templates can be bound."))
    if db.session.get(ApiClientTemplate, (client.id, template.id)) is not None:
        raise Conflict(_("The template is already bound to this client."))
    binding = ApiClientTemplate(
        client_id=client.id, template_id=template.id, bound_at=utcnow(), bound_by_id=actor.id
    )
    db.session.add(binding)
    audit.record(
        "api_client.template_bound",
        actor=actor,
        target=client,
        details={
            "template_id": template.id,
            "template": template.name,
            "version": template.version,
        },
    )
    return binding


def unbind(client_id: int, template_id: int, actor: User) -> None:
    """The client may no longer fill ``template_id``."""
    _require_admin(actor)
    client = _load(client_id, lock=True)
    binding = db.session.get(ApiClientTemplate, (client.id, template_id))
    if binding is None:
        raise Conflict(_("The template is not bound to this client."))
    db.session.delete(binding)
    audit.record(
        "api_client.template_unbound",
        actor=actor,
        target=client,
        details={"template_id": template_id},
    )


# ------------------------------------------------------------------ reading


def list_clients() -> list[ApiClient]:
    return list(
        db.session.execute(
            select(ApiClient).order_by(ApiClient.active.desc(), ApiClient.name, ApiClient.id)
        ).scalars()
    )


def get_client(client_id: int) -> ApiClient:
    return _load(client_id)


def bindable_templates(client: ApiClient) -> list[MessageTemplate]:
    """Approved templates of the client's unit not yet bound to it."""
    from app.services import templates

    bound = {b.template_id for b in client.bindings}
    return [t for t in templates.approved_of_unit(client.unit_id) if t.id not in bound]


def is_bound(client: ApiClient, template_id: int) -> bool:
    return db.session.get(ApiClientTemplate, (client.id, template_id)) is not None


# ------------------------------------------------------------------ authentication


def authenticate(authorization: str | None) -> ApiClient:
    """The active client whose key is in ``Authorization: Bearer <key>``.

    The stored hash is compared in constant time; a prefix that matches no client is
    compared against a dummy hash so both paths cost the same. ``Unauthorized`` for a
    missing, malformed, wrong or revoked key.
    """
    scheme, _sep, key = (authorization or "").strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise Unauthorized(_("Send the API key as Authorization: Bearer <key>."))
    prefix = key[:PREFIX_LENGTH]
    client = None
    if len(key) <= 200 and key.isascii():
        client = db.session.execute(
            select(ApiClient).where(ApiClient.key_prefix == prefix)
        ).scalar_one_or_none()
    stored = client.key_hash if client is not None else _DUMMY_HASH
    matches = hmac.compare_digest(stored, hash_key(key))
    if client is None or not matches:
        raise Unauthorized(_("The API key is wrong."))
    if not client.active:
        raise Unauthorized(_("This API key has been revoked."))
    if client.user is None or not client.user.active:
        raise Unauthorized(_("The interface user of this key is deactivated."))
    return client


def touch(client: ApiClient) -> bool:
    """Note the client's last use (at most once a minute); True when it changed the row,
    which the caller commits."""
    now = utcnow()
    if client.last_used_at is None or now - client.last_used_at >= TOUCH_INTERVAL:
        client.last_used_at = now
        return True
    return False


@dataclass(frozen=True)
class RateState:
    limit: int
    remaining: int
    reset: int  # seconds until the window ends


def check_rate(client: ApiClient, redis_client=None) -> RateState:
    """Count one call of the client's key in the current minute (Redis's clock, so every
    web process shares one window). ``RateLimited`` when the count passes the limit,
    ``ServiceUnavailable`` when Redis cannot be reached (the API then refuses rather
    than run unlimited)."""
    if redis_client is None:
        from app.redis_conn import get_redis

        redis_client = get_redis()
    limit = max(int(client.rate_limit_per_minute or 0), 1)
    try:
        seconds, _micro = redis_client.time()
        window = int(seconds) // 60
        key = f"api:rate:{client.id}:{window}"
        pipe = redis_client.pipeline()
        pipe.incr(key)
        pipe.expire(key, 90)
        count = int(pipe.execute()[0])
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        log.error("API rate limiter unreachable: %s", exc)
        raise ServiceUnavailable() from exc
    reset = 60 - int(seconds) % 60
    if count > limit:
        raise RateLimited(retry_after=reset, limit=limit)
    return RateState(limit=limit, remaining=limit - count, reset=reset)
