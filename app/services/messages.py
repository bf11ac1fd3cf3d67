"""The life of a message up to approval (R-40 to R-49).

    draft --submit--> pending --approve--> approved --(sending area)--> sending -> sent
                        |  \\--reject--> rejected --edit--> draft
                        \\-- edit: re-routed, stays pending
    approved --edit--> approval voided, re-routed, pending again
    draft / pending / approved / rejected --cancel--> cancelled

Every transition writes an audit row and a ``MessageApproval`` row in the same
transaction; the caller commits. Checks that protect the customer run on the server
whatever the form sent: the category the author's unit may write (R-41, Art 13), the
content rules (R-43), at most ten segments (R-44), a non-empty audience within scope
(R-45), a schedule not in the past (R-47), and who may decide (R-42).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, func, or_, select

from app.extensions import db
from app.models import Message, MessageApproval, Unit, User
from app.models.messages import (
    COMMERCIAL_CATEGORIES,
    DRAFT_CATEGORIES,
    OPEN_STATUSES,
)
from app.services import audience, audit, message_settings, org, routing, rules, scope, segments
from app.services.errors import Conflict, NotFound, PermissionDenied, ValidationError
from app.timeutil import local_to_utc, utcnow

TITLE_MAX = 200
BODY_MAX = 1000

CATEGORY_LABELS = {
    "notice": _l("Transactional notice"),
    "market": _l("Market information"),
    "account": _l("Account information"),
    "advisory": _l("Advisory"),
    "internal": _l("Internal notice (staff)"),
    "inquiry": _l("Consent inquiry"),
    "product": _l("Advisory product issue"),
}
STATUS_LABELS = {
    "draft": _l("Draft"),
    "pending": _l("Waiting for approval"),
    "approved": _l("Approved"),
    "rejected": _l("Rejected"),
    "cancelled": _l("Cancelled"),
    "sending": _l("Sending"),
    "sent": _l("Sent"),
}
DECISION_LABELS = {
    "submit": _l("Submitted"),
    "approve": _l("Approved"),
    "reject": _l("Rejected"),
    "void": _l("Approval voided by an edit"),
    "cancel": _l("Cancelled"),
}


def allowed_categories(unit: Unit) -> tuple[str, ...]:
    """What a unit may write (R-41): HQ departments other than Research transactional
    notices only (Art 13); Research and the branches every drafting category."""
    if unit.kind == "branch" or unit.is_research:
        return DRAFT_CATEGORIES
    return ("notice",)


def longest_branch_name() -> str:
    """The longest branch name, the realistic maximum of ``{branch}``."""
    return (
        db.session.execute(
            select(Unit.name)
            .where(Unit.kind == "branch")
            .order_by(func.length(Unit.name).desc(), Unit.id)
            .limit(1)
        ).scalar()
        or ""
    )


def measure(body: str, category: str) -> segments.SegmentInfo:
    """The segment count of ``body`` as it would go out (signature, opt-out line, longest
    placeholders), with the current settings."""
    return segments.measure(
        body,
        commercial=category in COMMERCIAL_CATEGORIES,
        opt_out_line=message_settings.get("opt_out_line"),
        signature=message_settings.SIGNATURE,
        longest_branch=longest_branch_name(),
    )


def final_text(message: Message) -> str:
    """Signature + body + opt-out line as the sending area sends it (placeholders unfilled)."""
    return segments.compose(
        message.body,
        commercial=message.is_commercial,
        opt_out_line=message_settings.get("opt_out_line"),
        signature=message_settings.SIGNATURE,
    )


# ------------------------------------------------------------------ input


@dataclass
class DraftInput:
    title: str = ""
    body: str = ""
    category: str = ""
    audience: dict = field(default_factory=dict)
    schedule_at: datetime | None = None  # naive UTC; None = on approval
    urgent: bool = False
    schedule_text: str = ""  # as typed, to show the form again


def draft_from_form(form) -> DraftInput:
    """Read the drafting form. Raises ``ValidationError`` for an unreadable schedule."""
    raw_schedule = (form.get("schedule_at") or "").strip()
    schedule_at = None
    if raw_schedule:
        try:
            schedule_at = local_to_utc(datetime.strptime(raw_schedule[:16], "%Y-%m-%dT%H:%M"))
        except ValueError as exc:
            raise ValidationError(
                _("Write the schedule as date and time, e.g. 2026-12-01 09:30.")
            ) from exc
    category = (form.get("category") or "").strip()
    kind = "staff" if category == "internal" else "customers"
    if kind == "staff":
        aud = {"kind": "staff", "units": form.getlist("units")}
    else:
        aud = {
            "kind": "customers",
            "branches": form.getlist("branches"),
            "managers": form.getlist("managers"),
            "risk_levels": form.getlist("risk_levels"),
            "tags": form.get("tags", ""),
            "upload_id": form.get("upload_id") or None,
        }
    return DraftInput(
        title=(form.get("title") or "").strip(),
        body=(form.get("body") or "").replace("\r\n", "\n").strip(),
        category=category,
        audience=aud,
        schedule_at=schedule_at,
        urgent=form.get("urgent") in ("1", "on", "true", "y"),
        schedule_text=raw_schedule,
    )


def _check_input(data: DraftInput, unit: Unit, author: User) -> audience.AudienceSpec:
    """What every save checks; returns the parsed audience."""
    if data.category not in DRAFT_CATEGORIES or data.category not in allowed_categories(unit):
        # Only a forged form offers a category outside the list (R-41, Art 13).
        raise PermissionDenied(
            _(
                "Your unit may not write this category of message: HQ departments other than Research write transactional notices only (Art 13)."
            )
        )
    if len(data.title) > TITLE_MAX:
        raise ValidationError(_("The title is at most %(n)s characters.", n=TITLE_MAX))
    if len(data.body) > BODY_MAX:
        raise ValidationError(_("The text is at most %(n)s characters.", n=BODY_MAX))
    info = measure(data.body, data.category)
    if info.over_limit:
        raise ValidationError(
            _(
                "The message would take %(n)s SMS segments; at most %(max)s are allowed. Shorten the text.",
                n=info.segments,
                max=segments.MAX_SEGMENTS,
            )
        )
    if info.unknown_placeholders:
        raise ValidationError(
            _(
                "Unknown placeholder(s): %(p)s. Only {name} and {branch} are filled in.",
                p=", ".join(f"{{{p}}}" for p in info.unknown_placeholders),
            )
        )
    if data.schedule_at is not None and data.schedule_at <= utcnow():
        raise ValidationError(
            _(
                "The scheduled time has passed. Choose a later time, or leave it empty to send on approval."
            )
        )
    spec = audience.parse(data.audience)
    audience.validate(spec, unit=unit, author=author, category=data.category)
    return spec


def _apply(message: Message, data: DraftInput, spec: audience.AudienceSpec) -> None:
    message.title = data.title
    message.body = data.body
    message.category = data.category
    message.audience = spec.to_json()
    message.schedule_at = data.schedule_at
    message.urgent = data.urgent
    message.segments = measure(data.body, data.category).segments
    message.updated_at = utcnow()


def _history(message: Message, decision: str, actor: User | None, comment: str = "") -> None:
    db.session.add(
        MessageApproval(
            message_id=message.id,
            version=message.version,
            decision=decision,
            comment=comment,
            route=message.route,
            route_article=message.route_article,
            actor_id=actor.id if actor else None,
            at=utcnow(),
        )
    )


def _load(message_id: int, *, lock: bool = False) -> Message:
    query = select(Message).where(Message.id == message_id)
    if lock:
        # Two approvers (or an approver and the author) at once: the second waits, then
        # sees the first one's outcome (PostgreSQL; SQLite serialises writers anyway).
        query = query.with_for_update()
    message = db.session.execute(query).scalar_one_or_none()
    if message is None:
        raise NotFound(_("No such message."))
    return message


# ------------------------------------------------------------------ author's side


def create_draft(author: User, data: DraftInput) -> Message:
    """A new draft in the author's unit. The caller commits."""
    if not author.can("message.draft"):
        raise PermissionDenied()
    spec = _check_input(data, author.unit, author)
    now = utcnow()
    message = Message(
        unit_id=author.unit_id,
        author_id=author.id,
        status="draft",
        version=1,
        created_at=now,
        route="",
        route_article="",
    )
    _apply(message, data, spec)
    db.session.add(message)
    db.session.flush()
    audit.record(
        "message.created",
        actor=author,
        target=message,
        details={"category": message.category, "title": message.title},
    )
    return message


def update(
    message_id: int, editor: User, data: DraftInput, expected_version: int | None
) -> Message:
    """The author edits their message. A pending message is re-routed; an approved one
    loses its approval and goes back to the route (R-42); a rejected one becomes a draft
    again. Refused (nothing changes) when the message moved on since the author opened it."""
    message = _load(message_id, lock=True)
    if message.author_id != editor.id:
        raise PermissionDenied(_("Only the author can edit a message."))
    if message.status not in OPEN_STATUSES:
        raise Conflict(
            _("A message that is %(s)s cannot be edited.", s=STATUS_LABELS[message.status])
        )
    if message.status == "approved" and message.send_started_at is not None:
        raise Conflict(_("Sending has begun; the message can no longer be edited."))
    if expected_version is not None and expected_version != message.version:
        raise Conflict(_("The message changed since you opened it. Reload it and edit again."))
    spec = _check_input(data, message.unit, editor)
    prior = message.status
    _apply(message, data, spec)
    message.version += 1
    audit.record(
        "message.edited",
        actor=editor,
        target=message,
        details={"version": message.version, "status": prior},
    )
    if prior == "approved":
        _history(message, "void", editor, _("Edited after approval"))
        audit.record(
            "message.approval_voided",
            actor=editor,
            target=message,
            details={"approved_version": message.approved_version, "version": message.version},
        )
        message.approved_at = message.approved_by_id = message.approved_version = None
        _submit(message, editor)
    elif prior == "pending":
        _submit(message, editor)
    elif prior == "rejected":
        message.status = "draft"
    return message


def _submit(message: Message, actor: User) -> None:
    unit = message.unit
    if message.category not in allowed_categories(unit):
        raise PermissionDenied(
            _(
                "Your unit may not write this category of message: HQ departments other than Research write transactional notices only (Art 13)."
            )
        )
    if not message.body.strip():
        raise ValidationError(_("The message has no text."))
    info = measure(message.body, message.category)
    if info.over_limit:
        raise ValidationError(
            _(
                "The message would take %(n)s SMS segments; at most %(max)s are allowed. Shorten the text.",
                n=info.segments,
                max=segments.MAX_SEGMENTS,
            )
        )
    found = rules.check_text(message.body, message.category)
    if found.blocks:
        raise ValidationError(rules.block_message(found))
    now = utcnow()
    if message.schedule_at is not None and message.schedule_at <= now:
        raise ValidationError(
            _(
                "The scheduled time has passed. Choose a later time, or leave it empty to send on approval."
            )
        )
    spec = audience.parse(message.audience)
    audience.validate(spec, unit=unit, author=actor, category=message.category)
    if spec.is_empty:
        raise ValidationError(_("Choose who receives the message."))
    counted = audience.preview(
        spec,
        unit=unit,
        category=message.category,
        send_at=message.schedule_at,
        urgent=message.urgent,
        exclude_message_id=message.id,
    )
    if counted.eligible == 0:
        raise ValidationError(
            _(
                "Nobody in the audience would receive the message (%(n)s excluded). Change the audience.",
                n=counted.excluded_total,
            )
        )
    chosen = routing.route_for(unit, message.category, message.author_id)
    if not chosen.approver_ids:
        raise ValidationError(
            _(
                "Nobody but you could approve this message. Ask the Market Business Dept to name another approver."
            )
        )
    message.status = "pending"
    message.route, message.route_unit_id = chosen.group, chosen.unit_id
    message.route_article, message.route_fallback = chosen.article, chosen.fallback
    message.submitted_at = now
    message.segments = info.segments
    message.audience_summary = json.dumps(counted.as_dict(), ensure_ascii=False)
    message.rule_warnings = json.dumps([m.as_dict() for m in found.warnings], ensure_ascii=False)
    _history(message, "submit", actor)
    audit.record(
        "message.submitted",
        actor=actor,
        target=message,
        details={
            "version": message.version,
            "route": chosen.group,
            "route_unit_id": chosen.unit_id,
            "article": chosen.article,
            "fallback": chosen.fallback,
            "eligible": counted.eligible,
            "warnings": [m.label for m in found.warnings],
        },
    )


def submit(message_id: int, actor: User, expected_version: int | None = None) -> Message:
    """Send a draft (or a rejected message) to its approvers. The caller commits."""
    message = _load(message_id, lock=True)
    if message.author_id != actor.id:
        raise PermissionDenied(_("Only the author can submit a message."))
    if message.status not in ("draft", "rejected"):
        raise Conflict(_("The message is already %(s)s.", s=STATUS_LABELS[message.status]))
    if expected_version is not None and expected_version != message.version:
        raise Conflict(_("The message changed since you opened it. Reload it and try again."))
    _submit(message, actor)
    return message


def save_and_submit(
    author: User,
    data: DraftInput,
    message_id: int | None = None,
    expected_version: int | None = None,
) -> Message:
    """Save the form and submit it in one go: either both happen or neither."""
    if message_id is None:
        message = create_draft(author, data)
    else:
        message = update(message_id, author, data, expected_version)
        if message.status == "pending":  # an edit of a pending or approved message re-submitted it
            return message
    _submit(message, author)
    return message


def can_cancel(user: User, message: Message) -> bool:
    """The author may withdraw a message before it sends (R-47). A message an API client
    sent has a system account for author: a head of the client's unit (one who approves
    that unit's messages) may withdraw it instead."""
    if message.status not in OPEN_STATUSES or message.send_started_at is not None:
        return False
    if message.author_id == user.id:
        return True
    from app.models import ApiMessage

    return db.session.get(ApiMessage, message.id) is not None and user in org.unit_approvers(
        message.unit_id
    )


def cancel(message_id: int, actor: User, comment: str = "") -> Message:
    """Withdraw the message before sending (R-47; who may: ``can_cancel``). The caller
    commits."""
    message = _load(message_id, lock=True)
    if message.author_id != actor.id and not can_cancel(actor, message):
        raise PermissionDenied(
            _("Only the author (for an API message, a head of its unit) can cancel a message.")
        )
    if message.status not in OPEN_STATUSES or message.send_started_at is not None:
        raise Conflict(
            _("A message that is %(s)s cannot be cancelled.", s=STATUS_LABELS[message.status])
        )
    prior = message.status
    message.status = "cancelled"
    message.updated_at = utcnow()
    _history(message, "cancel", actor, comment.strip()[:1000])
    audit.record("message.cancelled", actor=actor, target=message, details={"status": prior})
    return message


# ------------------------------------------------------------------ approver's side


def can_decide(user: User, message: Message) -> bool:
    """True when ``user`` may approve or reject ``message`` now."""
    return (
        message.status == "pending"
        and user.id != message.author_id
        and routing.is_member(user, message.route, message.route_unit_id)
    )


def _decision_checks(message: Message, approver: User, seen_version: int | None) -> None:
    if not routing.is_member(approver, message.route, message.route_unit_id):
        raise PermissionDenied(_("This message is not routed to you."))
    if approver.id == message.author_id:
        raise PermissionDenied(_("Nobody approves their own message."))
    if message.status == "approved":
        raise Conflict(_("The message is already approved."))
    if message.status != "pending":
        raise Conflict(
            _("The message is %(s)s and waits for no decision.", s=STATUS_LABELS[message.status])
        )
    if seen_version is None or seen_version != message.version:
        raise Conflict(
            _("The message changed since you opened it. Read the new version before deciding.")
        )


def approve(
    message_id: int, approver: User, seen_version: int | None, comment: str = ""
) -> Message:
    """Approve the version the approver read. The content rules run again, since they may
    have changed since submission. The caller commits."""
    message = _load(message_id, lock=True)
    _decision_checks(message, approver, seen_version)
    found = rules.check_text(message.body, message.category)
    if found.blocks:
        raise ValidationError(rules.block_message(found))
    now = utcnow()
    message.status = "approved"
    message.approved_at, message.approved_by_id = now, approver.id
    message.approved_version = message.version
    message.rule_warnings = json.dumps([m.as_dict() for m in found.warnings], ensure_ascii=False)
    message.updated_at = now
    _history(message, "approve", approver, comment.strip()[:1000])
    audit.record(
        "message.approved",
        actor=approver,
        target=message,
        details={
            "version": message.version,
            "route": message.route,
            "article": message.route_article,
            "schedule_at": message.schedule_at,
            "comment": comment.strip()[:200],
        },
    )
    return message


def reject(message_id: int, approver: User, seen_version: int | None, comment: str) -> Message:
    """Return the message to its author with the reason. The caller commits."""
    comment = (comment or "").strip()
    message = _load(message_id, lock=True)
    _decision_checks(message, approver, seen_version)
    if not comment:
        raise ValidationError(_("Say why the message is rejected: the author reads the comment."))
    message.status = "rejected"
    message.updated_at = utcnow()
    _history(message, "reject", approver, comment[:1000])
    audit.record(
        "message.rejected",
        actor=approver,
        target=message,
        details={"version": message.version, "comment": comment[:200]},
    )
    return message


# ------------------------------------------------------------------ reading


def get_visible(message_id: int, user: User) -> Message:
    """A message the user may read: their unit's, routed to them, or any for those who
    see every unit; otherwise NotInScope (404)."""
    message = db.session.get(Message, message_id)
    if message is None:
        raise NotFound(_("No such message."))
    if (
        message.unit_id == user.unit_id
        or scope.sees_all_units(user)
        or routing.is_member(user, message.route, message.route_unit_id)
    ):
        return message
    raise scope.NotInScope()


def list_query(user: User, *, mine: bool = False, status: str = ""):
    """Messages of the user's unit (or only their own), newest first; every unit's for
    those who see all units."""
    query = select(Message)
    if mine:
        query = query.where(Message.author_id == user.id)
    else:
        query = scope.restrict(query, Message.unit_id, user)
    if status:
        query = query.where(Message.status == status)
    return query.order_by(Message.updated_at.desc(), Message.id.desc())


def inbox_query(user: User):
    """What waits for this user's decision (R-48), newest first."""
    groups = routing.groups_of(user)
    if not groups:
        return select(Message).where(Message.id.is_(None))
    return (
        select(Message)
        .where(
            Message.status == "pending",
            Message.author_id != user.id,
            or_(*[and_(Message.route == g, Message.route_unit_id == u) for g, u in groups]),
        )
        .order_by(Message.submitted_at.desc(), Message.id.desc())
    )


def inbox_count(user: User) -> int:
    return db.session.execute(
        select(func.count()).select_from(inbox_query(user).order_by(None).subquery())
    ).scalar_one()


def summary_of(message: Message) -> dict:
    try:
        return json.loads(message.audience_summary or "{}")
    except ValueError:
        return {}


def warnings_of(message: Message) -> list[dict]:
    try:
        return json.loads(message.rule_warnings or "[]")
    except ValueError:
        return []
