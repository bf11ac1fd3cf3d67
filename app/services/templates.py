"""Approved templates (R-15, R-42): message content an API client fills with variables.

    draft --submit--> pending --approve--> approved
                        \\--reject--> rejected --edit--> draft
    approved --edit--> approval voided, routed again, pending

A template takes the approval route a message of its category written in its unit
would take (``app.services.routing``, R-42) — once: API sends that fill an approved
template need no approval of their own. The same content rules apply (R-43), on
submission and again at approval. Editing an approved template voids its approval
and sends it along the route again; until it is approved anew no API send can use it.

Placeholders are written ``{word}`` (letters and underscores, as the sending area
reads them). ``{name}`` and ``{branch}`` are filled from the customer's record by the
sending area, like in any message; every other placeholder is a *variable* the API
client supplies per recipient (``fill`` checks them: a missing or an extra one is
refused naming it).

Every transition writes a ``TemplateApproval`` row and an audit row in the caller's
transaction; the caller commits.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, func, or_, select

from app.extensions import db
from app.models import MessageTemplate, TemplateApproval, User
from app.models.api import TEMPLATE_CATEGORIES, TEMPLATE_OPEN_STATUSES
from app.models.messages import COMMERCIAL_CATEGORIES
from app.services import audit, message_settings, routing, rules, scope, segments
from app.services import messages as message_service
from app.services.errors import Conflict, NotFound, PermissionDenied, ValidationError
from app.timeutil import utcnow

NAME_MAX = 100
CONTENT_MAX = message_service.BODY_MAX
# Filled by the sending area from the customer record, never by the client.
SYSTEM_PLACEHOLDERS = segments.PLACEHOLDERS
VARIABLES_MAX = 10
VARIABLE_MAX_CHARS = 40
# A variable counts at this many characters in the template's segment estimate; each
# API send is measured again with its real values.
ESTIMATE_CHARS = 10
_PLACEHOLDER = re.compile(r"\{([A-Za-z_]+)\}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

STATUS_LABELS = {
    "draft": _l("Draft"),
    "pending": _l("Waiting for approval"),
    "approved": _l("Approved"),
    "rejected": _l("Rejected"),
}
DECISION_LABELS = {
    "submit": _l("Submitted"),
    "approve": _l("Approved"),
    "reject": _l("Rejected"),
    "void": _l("Approval voided by an edit"),
}


# ------------------------------------------------------------------ variables


def variables_in(content: str) -> list[str]:
    """The variables a client must supply, in order of first appearance."""
    seen: dict[str, None] = {}
    for name in _PLACEHOLDER.findall(content or ""):
        if name not in SYSTEM_PLACEHOLDERS:
            seen.setdefault(name, None)
    return list(seen)


def _stray_brace(content: str) -> bool:
    return bool(re.search(r"[{}]", _PLACEHOLDER.sub("", content or "")))


def estimate(content: str, category: str) -> segments.SegmentInfo:
    """Segments of the template with every variable at ``ESTIMATE_CHARS`` characters and
    ``{name}``/``{branch}`` at their longest (signature and opt-out line included)."""
    filled = segments.expand(content, {v: "字" * ESTIMATE_CHARS for v in variables_in(content)})
    return message_service.measure(filled, category)


def final_text(template: MessageTemplate) -> str:
    """The template as its messages go out: signature first, the opt-out line last for
    commercial categories (R-49); placeholders unfilled."""
    return segments.compose(
        template.content,
        commercial=template.category in COMMERCIAL_CATEGORIES,
        opt_out_line=message_settings.get("opt_out_line"),
        signature=message_settings.SIGNATURE,
    )


def _value_text(value) -> str | None:
    """A variable's value as text; None when it is not a string or a number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return None


def fill(template: MessageTemplate, values, *, field: str = "vars") -> str:
    """The template's content with the client's variables filled in (``{name}`` and
    ``{branch}`` stay for the sending area).

    Raises ``ValidationError`` naming the first problem, with ``field`` in its details:
    a variable missing or not declared by the template, a value that is not text or a
    number, empty, longer than VARIABLE_MAX_CHARS or holding control characters.
    """
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ValidationError(
            _("%(field)s must be an object of variables.", field=field), field=field
        )
    declared = variables_in(template.content)
    for name in values:
        if name not in declared:
            if name in SYSTEM_PLACEHOLDERS:
                raise ValidationError(
                    _(
                        "Variable %(var)s is not accepted (%(field)s): {%(var)s} is filled from the customer's record.",
                        var=name,
                        field=field,
                    ),
                    field=f"{field}.{name}",
                )
            raise ValidationError(
                _(
                    "Variable %(var)s is not in the template (%(field)s); it declares: %(declared)s.",
                    var=name,
                    field=field,
                    declared=", ".join(declared) or _("none"),
                ),
                field=f"{field}.{name}",
            )
    texts: dict[str, str] = {}
    for name in declared:
        if name not in values:
            raise ValidationError(
                _("Variable %(var)s is missing (%(field)s).", var=name, field=field),
                field=f"{field}.{name}",
            )
        text = _value_text(values[name])
        where = f"{field}.{name}"
        if text is None:
            raise ValidationError(
                _("Variable %(var)s must be text or a number (%(field)s).", var=name, field=field),
                field=where,
            )
        if not text.strip():
            raise ValidationError(
                _("Variable %(var)s is empty (%(field)s).", var=name, field=field), field=where
            )
        if len(text) > VARIABLE_MAX_CHARS:
            raise ValidationError(
                _(
                    "Variable %(var)s is longer than %(n)s characters (%(field)s).",
                    var=name,
                    n=VARIABLE_MAX_CHARS,
                    field=field,
                ),
                field=where,
            )
        if _CONTROL.search(text) or "{" in text or "}" in text:
            raise ValidationError(
                _(
                    "Variable %(var)s holds line breaks, control characters or braces (%(field)s).",
                    var=name,
                    field=field,
                ),
                field=where,
            )
        texts[name] = text
    return segments.expand(template.content, texts)


# ------------------------------------------------------------------ input


@dataclass
class TemplateInput:
    name: str = ""
    category: str = ""
    content: str = ""
    urgent: bool = False


def input_from_form(form) -> TemplateInput:
    return TemplateInput(
        name=(form.get("name") or "").strip(),
        category=(form.get("category") or "").strip(),
        content=(form.get("content") or "").replace("\r\n", "\n").strip(),
        urgent=form.get("urgent") in ("1", "on", "true", "y"),
    )


def _check_input(data: TemplateInput, unit) -> segments.SegmentInfo:
    """What every save checks (nothing is written before it passes)."""
    if (
        data.category not in TEMPLATE_CATEGORIES
        or data.category not in message_service.allowed_categories(unit)
    ):
        # R-41, Art 13: HQ departments other than Research write transactional notices only.
        raise PermissionDenied(
            _(
                "Your unit may not write this category of message: HQ departments other than Research write transactional notices only (Art 13)."
            )
        )
    if not data.name:
        raise ValidationError(_("Give the template a name."), field="name")
    if len(data.name) > NAME_MAX:
        raise ValidationError(_("The name is at most %(n)s characters.", n=NAME_MAX), field="name")
    if not data.content:
        raise ValidationError(_("The template has no text."), field="content")
    if len(data.content) > CONTENT_MAX:
        raise ValidationError(
            _("The text is at most %(n)s characters.", n=CONTENT_MAX), field="content"
        )
    if _stray_brace(data.content):
        raise ValidationError(
            _(
                "A brace is not part of a placeholder. Write placeholders as {amount}: letters and underscores between braces."
            ),
            field="content",
        )
    if len(variables_in(data.content)) > VARIABLES_MAX:
        raise ValidationError(
            _("A template has at most %(n)s variables.", n=VARIABLES_MAX), field="content"
        )
    info = estimate(data.content, data.category)
    if info.over_limit:
        raise ValidationError(
            _(
                "The message would take %(n)s SMS segments; at most %(max)s are allowed. Shorten the text.",
                n=info.segments,
                max=segments.MAX_SEGMENTS,
            ),
            field="content",
        )
    return info


def _history(
    template: MessageTemplate, decision: str, actor: User | None, comment: str = ""
) -> None:
    db.session.add(
        TemplateApproval(
            template_id=template.id,
            version=template.version,
            decision=decision,
            comment=comment,
            route=template.route,
            route_article=template.route_article,
            actor_id=actor.id if actor else None,
            at=utcnow(),
        )
    )


def _load(template_id: int, *, lock: bool = False) -> MessageTemplate:
    query = select(MessageTemplate).where(MessageTemplate.id == template_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    template = db.session.execute(query).scalar_one_or_none()
    if template is None:
        raise NotFound(_("No such template."))
    return template


# ------------------------------------------------------------------ author's side


def create(author: User, data: TemplateInput) -> MessageTemplate:
    """A new draft template in the author's unit. The caller commits."""
    if not author.can("message.draft"):
        raise PermissionDenied()
    info = _check_input(data, author.unit)
    now = utcnow()
    template = MessageTemplate(
        name=data.name,
        category=data.category,
        content=data.content,
        urgent=data.urgent,
        unit_id=author.unit_id,
        author_id=author.id,
        status="draft",
        version=1,
        route="",
        route_article="",
        segments=info.segments,
        rule_warnings="[]",
        created_at=now,
        updated_at=now,
    )
    db.session.add(template)
    db.session.flush()
    audit.record(
        "template.created",
        actor=author,
        target=template,
        details={
            "name": template.name,
            "category": template.category,
            "variables": variables_in(template.content),
        },
    )
    return template


def update(
    template_id: int, editor: User, data: TemplateInput, expected_version: int | None
) -> MessageTemplate:
    """The author edits the template. An approved one loses its approval and goes along
    the route again (R-42); a pending one is routed again; a rejected one becomes a
    draft. Refused, nothing changed, when the template moved on since it was opened."""
    template = _load(template_id, lock=True)
    if template.author_id != editor.id:
        raise PermissionDenied(_("Only the author can edit a template."))
    if template.status not in TEMPLATE_OPEN_STATUSES:
        raise Conflict(_("This template cannot be edited."))
    if expected_version is not None and expected_version != template.version:
        raise Conflict(_("The template changed since you opened it. Reload it and edit again."))
    info = _check_input(data, template.unit)
    prior = template.status
    template.name, template.category = data.name, data.category
    template.content, template.urgent = data.content, data.urgent
    template.segments = info.segments
    template.version += 1
    template.updated_at = utcnow()
    audit.record(
        "template.edited",
        actor=editor,
        target=template,
        details={"version": template.version, "status": prior},
    )
    if prior == "approved":
        _history(template, "void", editor, _("Edited after approval"))
        audit.record(
            "template.approval_voided",
            actor=editor,
            target=template,
            details={"approved_version": template.approved_version, "version": template.version},
        )
        template.approved_at = template.approved_by_id = template.approved_version = None
        _submit(template, editor)
    elif prior == "pending":
        _submit(template, editor)
    elif prior == "rejected":
        template.status = "draft"
    return template


def _submit(template: MessageTemplate, actor: User) -> None:
    found = rules.check_text(template.content, template.category)
    if found.blocks:
        raise ValidationError(rules.block_message(found), field="content")
    chosen = routing.route_for(template.unit, template.category, template.author_id)
    if not chosen.approver_ids:
        raise ValidationError(
            _(
                "Nobody but you could approve this template. Ask the Market Business Dept to name another approver."
            )
        )
    now = utcnow()
    template.status = "pending"
    template.route, template.route_unit_id = chosen.group, chosen.unit_id
    template.route_article, template.route_fallback = chosen.article, chosen.fallback
    template.submitted_at = now
    template.rule_warnings = json.dumps([m.as_dict() for m in found.warnings], ensure_ascii=False)
    _history(template, "submit", actor)
    audit.record(
        "template.submitted",
        actor=actor,
        target=template,
        details={
            "version": template.version,
            "route": chosen.group,
            "route_unit_id": chosen.unit_id,
            "article": chosen.article,
            "fallback": chosen.fallback,
            "warnings": [m.label for m in found.warnings],
        },
    )


def submit(template_id: int, actor: User, expected_version: int | None = None) -> MessageTemplate:
    """Send a draft (or rejected) template to its approvers. The caller commits."""
    template = _load(template_id, lock=True)
    if template.author_id != actor.id:
        raise PermissionDenied(_("Only the author can submit a template."))
    if template.status not in ("draft", "rejected"):
        raise Conflict(_("The template is already %(s)s.", s=STATUS_LABELS[template.status]))
    if expected_version is not None and expected_version != template.version:
        raise Conflict(_("The template changed since you opened it. Reload it and try again."))
    _submit(template, actor)
    return template


# ------------------------------------------------------------------ approver's side


def can_decide(user: User, template: MessageTemplate) -> bool:
    """True when ``user`` may approve or reject ``template`` now."""
    return (
        template.status == "pending"
        and user.id != template.author_id
        and routing.is_member(user, template.route, template.route_unit_id)
    )


def _decision_checks(template: MessageTemplate, approver: User, seen_version: int | None) -> None:
    if not routing.is_member(approver, template.route, template.route_unit_id):
        raise PermissionDenied(_("This template is not routed to you."))
    if approver.id == template.author_id:
        raise PermissionDenied(_("Nobody approves their own template."))
    if template.status != "pending":
        raise Conflict(
            _("The template is %(s)s and waits for no decision.", s=STATUS_LABELS[template.status])
        )
    if seen_version is None or seen_version != template.version:
        raise Conflict(
            _("The template changed since you opened it. Read the new version before deciding.")
        )


def approve(
    template_id: int, approver: User, seen_version: int | None, comment: str = ""
) -> MessageTemplate:
    """Approve the version the approver read; the content rules run again. The caller commits."""
    template = _load(template_id, lock=True)
    _decision_checks(template, approver, seen_version)
    found = rules.check_text(template.content, template.category)
    if found.blocks:
        raise ValidationError(rules.block_message(found))
    now = utcnow()
    template.status = "approved"
    template.approved_at, template.approved_by_id = now, approver.id
    template.approved_version = template.version
    template.rule_warnings = json.dumps([m.as_dict() for m in found.warnings], ensure_ascii=False)
    template.updated_at = now
    _history(template, "approve", approver, (comment or "").strip()[:1000])
    audit.record(
        "template.approved",
        actor=approver,
        target=template,
        details={
            "version": template.version,
            "route": template.route,
            "article": template.route_article,
            "comment": (comment or "").strip()[:200],
        },
    )
    return template


def reject(
    template_id: int, approver: User, seen_version: int | None, comment: str
) -> MessageTemplate:
    """Return the template to its author with the reason. The caller commits."""
    comment = (comment or "").strip()
    template = _load(template_id, lock=True)
    _decision_checks(template, approver, seen_version)
    if not comment:
        raise ValidationError(
            _("Say why the template is rejected: the author reads the comment."), field="comment"
        )
    template.status = "rejected"
    template.updated_at = utcnow()
    _history(template, "reject", approver, comment[:1000])
    audit.record(
        "template.rejected",
        actor=approver,
        target=template,
        details={"version": template.version, "comment": comment[:200]},
    )
    return template


# ------------------------------------------------------------------ reading


def get_visible(template_id: int, user: User) -> MessageTemplate:
    """A template the user may read: their unit's, routed to them, or any for those who
    see every unit; otherwise NotInScope (404)."""
    template = db.session.get(MessageTemplate, template_id)
    if template is None:
        raise NotFound(_("No such template."))
    if (
        template.unit_id == user.unit_id
        or scope.sees_all_units(user)
        or routing.is_member(user, template.route, template.route_unit_id)
    ):
        return template
    raise scope.NotInScope()


def list_query(user: User, *, status: str = ""):
    """Templates of the user's unit (every unit's for those who see all), newest first."""
    query = scope.restrict(select(MessageTemplate), MessageTemplate.unit_id, user)
    if status in STATUS_LABELS:
        query = query.where(MessageTemplate.status == status)
    return query.order_by(MessageTemplate.updated_at.desc(), MessageTemplate.id.desc())


def pending_query(user: User):
    """Templates waiting for this user's decision, oldest submission first."""
    groups = routing.groups_of(user)
    if not groups:
        return select(MessageTemplate).where(MessageTemplate.id.is_(None))
    return (
        select(MessageTemplate)
        .where(
            MessageTemplate.status == "pending",
            MessageTemplate.author_id != user.id,
            or_(
                *[
                    and_(MessageTemplate.route == g, MessageTemplate.route_unit_id == u)
                    for g, u in groups
                ]
            ),
        )
        .order_by(MessageTemplate.submitted_at, MessageTemplate.id)
    )


def pending_count(user: User) -> int:
    return db.session.execute(
        select(func.count()).select_from(pending_query(user).order_by(None).subquery())
    ).scalar_one()


def approved_of_unit(unit_id: int) -> list[MessageTemplate]:
    """The unit's templates whose approval stands (what a client of the unit may be bound to)."""
    rows = db.session.execute(
        select(MessageTemplate)
        .where(MessageTemplate.unit_id == unit_id, MessageTemplate.status == "approved")
        .order_by(MessageTemplate.name, MessageTemplate.id)
    ).scalars()
    return [t for t in rows if t.is_approved]
