"""Messages sent through the REST API (R-15): from a client's request to a real message.

An API send fills an approved template bound to the client's key and becomes an
ordinary ``Message`` of the client's unit, authored by the client's system account,
``approved`` at once because its text was approved as a template (R-42: once). Its
audience is an explicit list — an ``AudienceUpload`` of the customers' CRM ids, the
form every audience of listed customers takes — so the sending area dispatches it
like any other message: quiet hours, consent (refused, and undetermined customers are
suppressed), inactive customers, invalid numbers, duplicates and frequency caps are
applied at send time by the one audience select (``app.services.audience``), and every
recipient gets its own outcome (R-52).

What is particular to the API is kept beside the message, in this area's tables:
which client sent it (``ApiMessage``; only that client may read it back) and, per
(message, customer), how the client named the recipient and the values of the
template's variables (``ApiRecipient``; ``values_for`` reads them for the sending area).

Checks, every one before anything is written (nothing changes on a refusal):
the body's shape (422, naming the field), too many recipients (413), the template
bound to the key (403) and approved (409), each recipient's variables (422 naming the
variable), each filled text's length and content rules (422), each recipient a
customer within the client's scope (422: a branch's client reaches its own branch's
customers, an HQ department's every branch, as for staff messages), the schedule.

``Idempotency-Key``: the first answer is stored with the request's hash in the same
transaction as the message; a retry with the same body gets that answer again and
sends nothing, the same key with another body is refused (409).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, func, insert, select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import (
    ApiClient,
    ApiMessage,
    ApiRecipient,
    AudienceUpload,
    AudienceUploadRow,
    Customer,
    IdempotencyKey,
    Message,
    MessageApproval,
    MessageTemplate,
    Recipient,
    SendRun,
)
from app.models.messages import COMMERCIAL_CATEGORIES
from app.models.sending import RECIPIENT_STATUSES
from app.services import (
    api_clients,
    audience,
    audit,
    customers,
    message_settings,
    rules,
    segments,
    templates,
)
from app.services import messages as message_service
from app.services.errors import Conflict, DomainError, NotFound, PermissionDenied, ValidationError
from app.timeutil import local_to_utc, utcnow

MAX_ID = 2**31 - 1
CRM_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
IDEMPOTENCY_KEY_RE = re.compile(r"^[\x21-\x7e]{1,100}$")
REQUEST_FIELDS = ("template_id", "recipients", "schedule_at")
RECIPIENT_FIELDS = ("crm_id", "mobile", "vars")
# Recipient outcomes the API reports: the sending area's, plus "pending" before the
# recipients are built at send time.
OUTCOMES = ("pending",) + RECIPIENT_STATUSES
PER_PAGE_MAX = 500
PAGE_MAX = 100_000


class PayloadTooLarge(DomainError):
    """More recipients (or bytes) in one call than allowed (413)."""

    status = 413
    default_message = _l("The request is too large.")


class IdempotencyConflict(Conflict):
    """The Idempotency-Key was used before with another body (409)."""

    default_message = _l(
        "This Idempotency-Key was used with a different request body; use a new key for a new request."
    )


class TemplateNotApproved(Conflict):
    """The bound template's approval does not stand (edited since) (409)."""


# ------------------------------------------------------------------ parsing


@dataclass(frozen=True)
class RecipientInput:
    index: int
    crm_id: str | None
    mobile: str | None
    vars: dict

    @property
    def ref_kind(self) -> str:
        return "crm_id" if self.crm_id is not None else "mobile"

    @property
    def ref(self) -> str:
        return self.crm_id if self.crm_id is not None else self.mobile


@dataclass(frozen=True)
class SendRequest:
    template_id: int
    recipients: list[RecipientInput]
    schedule_at: datetime | None  # naive UTC


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_schedule(value, now: datetime | None = None) -> datetime | None:
    """``schedule_at`` as naive UTC: an ISO 8601 time with an offset, or without one in
    Asia/Shanghai time; later than now and within API_SCHEDULE_MAX_DAYS."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(
            _("schedule_at is an ISO 8601 time such as 2026-12-01T09:30:00+08:00."),
            field="schedule_at",
        )
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValidationError(
            _("schedule_at is an ISO 8601 time such as 2026-12-01T09:30:00+08:00."),
            field="schedule_at",
        ) from exc
    try:
        at = (
            moment.astimezone(UTC).replace(tzinfo=None)
            if moment.tzinfo is not None
            else local_to_utc(moment)
        )
    except (OverflowError, ValueError) as exc:
        raise ValidationError(_("schedule_at is out of range."), field="schedule_at") from exc
    now = now or utcnow()
    if at <= now:
        raise ValidationError(
            _("schedule_at has passed; leave it out to send now."), field="schedule_at"
        )
    days = int(current_app.config["API_SCHEDULE_MAX_DAYS"])
    if at > now + timedelta(days=days):
        raise ValidationError(
            _("schedule_at is at most %(n)s days ahead.", n=days), field="schedule_at"
        )
    return at


def parse(payload) -> SendRequest:
    """Check the body's shape; ``ValidationError`` (422) naming the field, or
    ``PayloadTooLarge`` (413) for more than API_MAX_RECIPIENTS recipients."""
    if not isinstance(payload, dict):
        raise ValidationError(_("The body must be a JSON object."), field="")
    for key in payload:
        if key not in REQUEST_FIELDS:
            raise ValidationError(_("Unknown field %(f)s.", f=key), field=str(key))
    template_id = payload.get("template_id")
    if not _is_int(template_id) or not 1 <= template_id <= MAX_ID:
        raise ValidationError(
            _("template_id must be the number of a template."), field="template_id"
        )
    raw = payload.get("recipients")
    if not isinstance(raw, list) or not raw:
        raise ValidationError(
            _("recipients must be a list of at least one recipient."), field="recipients"
        )
    limit = int(current_app.config["API_MAX_RECIPIENTS"])
    if len(raw) > limit:
        raise PayloadTooLarge(
            _(
                "At most %(n)s recipients per call; this call has %(m)s. Split it.",
                n=limit,
                m=len(raw),
            ),
            field="recipients",
        )
    recipients = []
    for i, item in enumerate(raw):
        where = f"recipients[{i}]"
        if not isinstance(item, dict):
            raise ValidationError(_("%(f)s must be an object.", f=where), field=where)
        for key in item:
            if key not in RECIPIENT_FIELDS:
                raise ValidationError(
                    _("Unknown field %(f)s.", f=f"{where}.{key}"), field=f"{where}.{key}"
                )
        crm_id, mobile = item.get("crm_id"), item.get("mobile")
        if (crm_id is None) == (mobile is None):
            raise ValidationError(
                _("%(f)s needs exactly one of crm_id and mobile.", f=where), field=where
            )
        if crm_id is not None and not (isinstance(crm_id, str) and CRM_ID_RE.match(crm_id)):
            raise ValidationError(
                _("%(f)s.crm_id is not a CRM id (1 to 32 letters, digits, '_' or '-').", f=where),
                field=f"{where}.crm_id",
            )
        if mobile is not None and not (
            isinstance(mobile, str) and customers.MOBILE_RE.match(mobile)
        ):
            raise ValidationError(
                _("%(f)s.mobile is not an 11-digit Chinese mobile number.", f=where),
                field=f"{where}.mobile",
            )
        variables = item.get("vars", {})
        if not isinstance(variables, dict):
            raise ValidationError(
                _("%(f)s must be an object of variables.", f=f"{where}.vars"), field=f"{where}.vars"
            )
        recipients.append(RecipientInput(i, crm_id, mobile, variables))
    seen: dict[tuple[str, str], int] = {}
    for r in recipients:
        first = seen.setdefault((r.ref_kind, r.ref), r.index)
        if first != r.index:
            raise ValidationError(
                _("recipients[%(i)s] repeats recipients[%(j)s].", i=r.index, j=first),
                field=f"recipients[{r.index}]",
            )
    return SendRequest(template_id, recipients, parse_schedule(payload.get("schedule_at")))


def request_hash(payload) -> str:
    """The hash an Idempotency-Key is tied to: of the JSON body, key order and spacing aside."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# ------------------------------------------------------------------ checks


def usable_template(client: ApiClient, template_id: int) -> MessageTemplate:
    """The template if the key may fill it: bound (403 otherwise, also for a template
    that does not exist) and approved in its current version (409 otherwise)."""
    template = db.session.get(MessageTemplate, template_id)
    if template is None or not api_clients.is_bound(client, template_id):
        raise PermissionDenied(_("Template %(id)s is not bound to this key.", id=template_id))
    if not template.is_approved:
        raise TemplateNotApproved(
            _(
                "Template %(id)s was changed and waits for approval again; it cannot be used until it is approved.",
                id=template_id,
            )
        )
    if template.category not in message_service.allowed_categories(client.unit):
        raise PermissionDenied(
            _("The client's unit may not send this category of message (Art 13).")
        )
    return template


def _filled_texts(
    template: MessageTemplate, recipients: list[RecipientInput]
) -> tuple[list[str], int]:
    """Each recipient's text (``fill``), checked for length and content rules; returns
    the texts and the largest segment count."""
    active = rules.active_rules()
    domains = message_settings.get("link_domains")
    commercial = template.category in COMMERCIAL_CATEGORIES
    opt_out = message_settings.get("opt_out_line")
    longest = message_service.longest_branch_name()
    texts, most = [], 1
    for r in recipients:
        where = f"recipients[{r.index}].vars"
        text = templates.fill(template, r.vars, field=where)
        info = segments.measure(
            text,
            commercial=commercial,
            opt_out_line=opt_out,
            signature=message_settings.SIGNATURE,
            longest_branch=longest,
        )
        if info.over_limit:
            raise ValidationError(
                _(
                    "With these values the message for recipients[%(i)s] takes %(n)s SMS segments; at most %(max)s are allowed.",
                    i=r.index,
                    n=info.segments,
                    max=segments.MAX_SEGMENTS,
                ),
                field=where,
            )
        found = rules.check(text, template.category, active, domains)
        if found.blocks:
            raise ValidationError(
                f"recipients[{r.index}]: {rules.block_message(found)}", field=where
            )
        texts.append(text)
        most = max(most, info.segments)
    return texts, most


@dataclass(frozen=True)
class Resolved:
    index: int
    customer_id: int
    crm_id: str


def resolve(client: ApiClient, recipients: list[RecipientInput]) -> list[Resolved]:
    """Each recipient's customer(s) within the client's scope: a CRM id names one, a
    mobile every customer with that number (the sending area then sends it once).

    ``ValidationError`` naming the first recipient that is no customer in scope (an
    out-of-scope customer reads the same as a missing one), or one that names a customer
    another recipient already named."""
    allowed = audience.scope_branch_ids(client.unit)
    c = Customer.__table__.c

    def scoped(query):
        return query.where(c.branch_id.in_(sorted(allowed))) if allowed is not None else query

    crm_ids = sorted({r.crm_id for r in recipients if r.crm_id is not None})
    mobiles = sorted({r.mobile for r in recipients if r.mobile is not None})
    by_crm: dict[str, int] = {}
    by_mobile: dict[str, list[tuple[int, str]]] = {}
    if crm_ids:
        for cid, crm in db.session.execute(
            scoped(select(c.id, c.crm_id).where(c.crm_id.in_(crm_ids)))
        ):
            by_crm[crm] = cid
    if mobiles:
        for cid, crm, mobile in db.session.execute(
            scoped(select(c.id, c.crm_id, c.mobile).where(c.mobile.in_(mobiles))).order_by(c.id)
        ):
            by_mobile.setdefault(mobile, []).append((cid, crm))
    out: list[Resolved] = []
    owner: dict[int, int] = {}
    for r in recipients:
        if r.crm_id is not None:
            found = [(by_crm[r.crm_id], r.crm_id)] if r.crm_id in by_crm else []
            missing = _(
                "recipients[%(i)s]: no customer with CRM id %(v)s in the client's scope.",
                i=r.index,
                v=r.crm_id,
            )
        else:
            found = by_mobile.get(r.mobile, [])
            missing = _(
                "recipients[%(i)s]: no customer with mobile %(v)s in the client's scope.",
                i=r.index,
                v=r.mobile,
            )
        if not found:
            raise ValidationError(missing, field=f"recipients[{r.index}]")
        for cid, crm in found:
            first = owner.setdefault(cid, r.index)
            if first != r.index:
                raise ValidationError(
                    _(
                        "recipients[%(i)s] names the same customer as recipients[%(j)s].",
                        i=r.index,
                        j=first,
                    ),
                    field=f"recipients[{r.index}]",
                )
            out.append(Resolved(r.index, cid, crm))
    return out


# ------------------------------------------------------------------ accepting a send


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict
    replayed: bool = False


def _iso(moment: datetime | None) -> str | None:
    return moment.replace(tzinfo=UTC).isoformat(timespec="seconds") if moment else None


def accept(client: ApiClient, payload, *, idempotency_key: str | None = None) -> Answer:
    """Turn a POST /api/v1/messages body into an approved message (see the module doc).

    With ``idempotency_key`` a retry returns the first answer (``replayed``) and sends
    nothing; the key with another body raises ``IdempotencyConflict``. The key's row is
    written first, so a concurrent retry waits on it (PostgreSQL) and then replays; the
    session is rolled back in that case. Otherwise the caller commits.
    """
    digest = None
    if idempotency_key is not None:
        if not IDEMPOTENCY_KEY_RE.match(idempotency_key):
            raise ValidationError(
                _("The Idempotency-Key header is 1 to 100 visible ASCII characters."),
                field="Idempotency-Key",
            )
        digest = request_hash(payload)
        prior = _stored_answer(client, idempotency_key, digest)
        if prior is not None:
            return prior
        row = IdempotencyKey(
            client_id=client.id,
            key=idempotency_key,
            request_hash=digest,
            response_status=0,
            response_body="",
            created_at=utcnow(),
        )
        db.session.add(row)
        try:
            db.session.flush()
        except IntegrityError:
            db.session.rollback()
            prior = _stored_answer(client, idempotency_key, digest)
            if prior is None:  # the other request failed and left nothing: ours may go on
                raise Conflict(
                    _("A request with this Idempotency-Key is in progress; retry shortly.")
                ) from None
            return prior
    answer = _create(client, payload)
    if idempotency_key is not None:
        row.response_status = answer.status
        row.response_body = json.dumps(answer.body, ensure_ascii=False)
        row.message_id = answer.body.get("id")
    return answer


def _stored_answer(client: ApiClient, key: str, digest: str) -> Answer | None:
    row = db.session.execute(
        select(IdempotencyKey).where(
            IdempotencyKey.client_id == client.id, IdempotencyKey.key == key
        )
    ).scalar_one_or_none()
    if row is None or not row.response_status:
        return None
    if row.request_hash != digest:
        raise IdempotencyConflict()
    return Answer(row.response_status, json.loads(row.response_body), replayed=True)


def _create(client: ApiClient, payload) -> Answer:
    req = parse(payload)
    template = usable_template(client, req.template_id)
    _texts, most_segments = _filled_texts(template, req.recipients)
    resolved = resolve(client, req.recipients)
    now = utcnow()
    user = client.user
    crm_ids = sorted({r.crm_id for r in resolved})
    upload = AudienceUpload(
        author_id=user.id,
        unit_id=client.unit_id,
        kind="crm_id",
        filename=f"API {client.key_prefix} {client.name}"[:200],
        total_lines=len(req.recipients),
        good_count=len(crm_ids),
        duplicate_count=0,
        bad_count=0,
        bad_lines="[]",
        confirmed=True,
        created_at=now,
    )
    db.session.add(upload)
    db.session.flush()
    db.session.execute(
        insert(AudienceUploadRow), [{"upload_id": upload.id, "value": v} for v in crm_ids]
    )
    spec = audience.AudienceSpec(kind="customers", upload_id=upload.id)
    message = Message(
        unit_id=client.unit_id,
        author_id=user.id,
        category=template.category,
        title=f"API · {client.name} · {template.name}"[:200],
        body=template.content,
        audience=spec.to_json(),
        status="approved",
        urgent=template.urgent,
        schedule_at=req.schedule_at,
        version=1,
        route=template.route,
        route_article=template.route_article,
        route_unit_id=template.route_unit_id,
        route_fallback=template.route_fallback,
        submitted_at=now,
        approved_at=now,
        approved_by_id=template.approved_by_id,
        approved_version=1,
        created_at=now,
        updated_at=now,
        segments=most_segments,
        audience_summary=json.dumps(
            {"listed": len(req.recipients), "customers": len(resolved), "source": "api"}
        ),
        rule_warnings=template.rule_warnings,
    )
    db.session.add(message)
    db.session.flush()
    # The approval this message rests on is the template's (R-42, once): the history says so.
    db.session.add(
        MessageApproval(
            message_id=message.id,
            version=1,
            decision="approve",
            route=template.route,
            route_article=template.route_article,
            actor_id=template.approved_by_id,
            at=now,
            comment=_(
                "Approved as template #%(id)s version %(v)s; sent through the API by %(client)s (key %(prefix)s).",
                id=template.id,
                v=template.version,
                client=client.name,
                prefix=client.key_prefix,
            ),
        )
    )
    db.session.add(
        ApiMessage(
            message_id=message.id,
            client_id=client.id,
            template_id=template.id,
            template_version=template.version,
            listed=len(req.recipients),
            customers=len(resolved),
            created_at=now,
        )
    )
    by_index = {r.index: r for r in req.recipients}
    db.session.execute(
        insert(ApiRecipient),
        [
            {
                "message_id": message.id,
                "customer_id": r.customer_id,
                "position": r.index,
                "ref_kind": by_index[r.index].ref_kind,
                "ref": by_index[r.index].ref,
                "vars": json.dumps(by_index[r.index].vars, ensure_ascii=False, sort_keys=True),
            }
            for r in resolved
        ],
    )
    audit.record(
        "api.message_accepted",
        actor=user,
        target=message,
        details={
            "client_id": client.id,
            "key_prefix": client.key_prefix,
            "template_id": template.id,
            "template_version": template.version,
            "listed": len(req.recipients),
            "customers": len(resolved),
            "schedule_at": req.schedule_at,
        },
    )
    body = {
        "id": message.id,
        "status": message.status,
        "template_id": template.id,
        "template_version": template.version,
        "recipients": len(req.recipients),
        "customers": len(resolved),
        "segments": most_segments,
        "urgent": bool(template.urgent),
        "schedule_at": _iso(req.schedule_at),
        "created_at": _iso(now),
    }
    return Answer(202, body)


# ------------------------------------------------------------------ reading back

_DIGITS = re.compile(r"^[0-9]{1,10}$")


def _own(client: ApiClient, message_id) -> ApiMessage:
    """The client's own API message; NotFound (404) for any other id."""
    text = str(message_id)
    mid = int(text) if _DIGITS.match(text) else 0
    row = db.session.get(ApiMessage, mid) if 1 <= mid <= MAX_ID else None
    if row is None or row.client_id != client.id:
        raise NotFound(_("No message %(id)s of this key.", id=message_id))
    return row


def _counts(row: ApiMessage) -> dict[str, int]:
    from app.services import sending

    counts = sending.outcome_counts(row.message_id)
    run = db.session.get(SendRun, row.message_id)
    built = run is not None and run.state != "building"
    return {"pending": 0 if built else row.customers, **counts}


def message_status(client: ApiClient, message_id) -> dict:
    """Status and counts per outcome of one of the client's messages."""
    row = _own(client, message_id)
    m: Message = row.message
    return {
        "id": m.id,
        "status": m.status,
        "template_id": row.template_id,
        "template_version": row.template_version,
        "recipients": row.listed,
        "customers": row.customers,
        "urgent": bool(m.urgent),
        "schedule_at": _iso(m.schedule_at),
        "created_at": _iso(row.created_at),
        "send_started_at": _iso(m.send_started_at),
        "sent_at": _iso(m.sent_at),
        "counts": _counts(row),
    }


def _page_arg(value, name: str, default: int, high: int) -> int:
    if value is None:
        return default
    text = str(value)
    number = int(text) if _DIGITS.match(text) else 0
    if not 1 <= number <= high:
        raise ValidationError(
            _("%(f)s is a whole number from 1 to %(n)s.", f=name, n=high), field=name
        )
    return number


def recipients_page(
    client: ApiClient, message_id, *, status=None, page=None, per_page=None
) -> dict:
    """The client's recipients of one message with their outcomes, in request order,
    optionally of one outcome, a page at a time."""
    row = _own(client, message_id)
    if status is not None and status not in OUTCOMES:
        raise ValidationError(_("status is one of: %(s)s.", s=", ".join(OUTCOMES)), field="status")
    page_no = _page_arg(page, "page", 1, PAGE_MAX)
    size = _page_arg(per_page, "per_page", 100, PER_PAGE_MAX)
    a, r = ApiRecipient.__table__.c, Recipient.__table__.c
    join = ApiRecipient.__table__.outerjoin(
        Recipient.__table__, and_(r.message_id == a.message_id, r.customer_id == a.customer_id)
    )
    query = (
        select(a.position, a.ref_kind, a.ref, r.status, r.reason, r.submitted_at, r.finished_at)
        .select_from(join)
        .where(a.message_id == row.message_id)
    )
    if status == "pending":
        query = query.where(r.id.is_(None))
    elif status:
        query = query.where(r.status == status)
    total = db.session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = db.session.execute(
        query.order_by(a.position, a.customer_id).offset((page_no - 1) * size).limit(size)
    ).all()
    items = []
    for position, kind, ref, outcome, reason, submitted_at, finished_at in rows:
        items.append(
            {
                "index": position,
                kind: ref,
                "status": outcome or "pending",
                "reason": reason or "",
                "submitted_at": _iso(submitted_at),
                "finished_at": _iso(finished_at),
            }
        )
    return {
        "message_id": row.message_id,
        "status": status,
        "page": page_no,
        "per_page": size,
        "total": total,
        "pages": max((total + size - 1) // size, 1),
        "items": items,
    }


def values_for(message_id: int, customer_ids) -> dict[int, dict]:
    """The variables of an API message per customer, for the sending area to fill the
    text with (``{customer_id: {"amount": "1,000.00", ...}}``); empty for other messages."""
    ids = [int(c) for c in customer_ids if c is not None]
    if not ids:
        return {}
    rows = db.session.execute(
        select(ApiRecipient.customer_id, ApiRecipient.vars).where(
            ApiRecipient.message_id == message_id, ApiRecipient.customer_id.in_(ids)
        )
    ).all()
    return {cid: json.loads(raw or "{}") for cid, raw in rows}


def values_for_recipients(message_id: int, recipient_ids) -> dict[int, dict]:
    """The same per sending-area recipient id (``{recipient_id: {...}}``), for a chunk of
    recipients being sent: their rows found by primary key, the variables by (message,
    customer). Empty for messages not sent through the API."""
    ids = [int(r) for r in recipient_ids if r is not None]
    if not ids:
        return {}
    a, r = ApiRecipient.__table__.c, Recipient.__table__.c
    rows = db.session.execute(
        select(r.id, a.vars)
        .select_from(
            Recipient.__table__.join(
                ApiRecipient.__table__,
                and_(a.message_id == r.message_id, a.customer_id == r.customer_id),
            )
        )
        .where(r.id.in_(ids), r.message_id == message_id)
    ).all()
    return {rid: json.loads(raw or "{}") for rid, raw in rows}


def purge_idempotency_keys(now: datetime | None = None) -> int:
    """Forget Idempotency-Keys older than API_IDEMPOTENCY_HOURS; returns how many."""
    from sqlalchemy import delete

    cut = (now or utcnow()) - timedelta(hours=int(current_app.config["API_IDEMPOTENCY_HOURS"]))
    gone = db.session.execute(
        delete(IdempotencyKey)
        .where(IdempotencyKey.created_at < cut)
        .execution_options(synchronize_session=False)
    ).rowcount
    if gone:
        audit.record(
            "api.idempotency_purged",
            actor=None,
            target_type="api_idempotency_keys",
            details={"deleted": gone, "before": cut},
        )
    return gone
