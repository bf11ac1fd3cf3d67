"""Drafting, the live counters and audience preview, and the message page (R-44 to R-47)."""

from __future__ import annotations

import json

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, select

from app.extensions import db
from app.htmx import is_partial_request, render_page_or_partial, render_partial
from app.models import AudienceUpload, Message, Unit, User
from app.models.customers import RISK_LEVELS
from app.models.messages import COMMERCIAL_CATEGORIES, MESSAGE_STATUSES, OPEN_STATUSES
from app.security import permission_required
from app.services import audience, message_settings, routing, rules, segments
from app.services import messages as svc
from app.services.errors import DomainError, PermissionDenied, ValidationError

bp = Blueprint("messages", __name__, url_prefix="/messages")


# ------------------------------------------------------------------ helpers


def _int_arg(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _choices(user: User) -> dict:
    """What the drafting form offers this user: only what the server would accept."""
    unit = user.unit
    allowed = audience.scope_branch_ids(unit)
    branch_q = select(Unit).where(Unit.kind == "branch", Unit.active.is_(True)).order_by(Unit.code)
    unit_q = select(Unit).where(Unit.active.is_(True)).order_by(Unit.kind.desc(), Unit.code)
    staff_q = (
        select(User)
        .join(Unit, Unit.id == User.unit_id)
        .where(Unit.kind == "branch", User.active.is_(True))
        .order_by(Unit.code, User.username)
    )
    if allowed is not None:
        branch_q = branch_q.where(Unit.id.in_(allowed))
        unit_q = unit_q.where(Unit.id.in_(allowed))
        staff_q = staff_q.where(User.unit_id.in_(allowed))
    return {
        "categories": svc.allowed_categories(unit),
        "branches": db.session.execute(branch_q).scalars().all(),
        "staff_units": db.session.execute(unit_q).scalars().all(),
        "managers": db.session.execute(staff_q).scalars().all(),
        "risk_levels": RISK_LEVELS,
    }


def _data_of(message: Message) -> svc.DraftInput:
    from app.timeutil import to_local

    return svc.DraftInput(
        title=message.title,
        body=message.body,
        category=message.category,
        audience=json.loads(message.audience or "{}"),
        schedule_at=message.schedule_at,
        urgent=message.urgent,
        schedule_text=to_local(message.schedule_at).strftime("%Y-%m-%dT%H:%M")
        if message.schedule_at
        else "",
    )


def _as_strings(value) -> set[str]:
    if value in (None, ""):
        return set()
    if not isinstance(value, list | tuple | set):
        value = [value]
    return {str(v) for v in value}


def _audience_form(raw: dict) -> dict:
    """The audience as the form shows it: chosen values as strings, tags as typed."""
    tags = raw.get("tags") or ""
    return {
        "branches": _as_strings(raw.get("branches")),
        "managers": _as_strings(raw.get("managers")),
        "risk_levels": _as_strings(raw.get("risk_levels")),
        "units": _as_strings(raw.get("units")),
        "tags": tags if isinstance(tags, str) else ", ".join(tags),
    }


def _counters(body: str, category: str, by_carrier: dict[str, int]) -> dict:
    category = category if category in svc.CATEGORY_LABELS else "notice"
    info = svc.measure(body, category)
    return {
        "info": info,
        "checked": rules.check_text(body, category),
        "recipients": sum(by_carrier.values()),
        "cost": message_settings.estimate_cost(info.segments, by_carrier),
        "commercial": category in COMMERCIAL_CATEGORIES,
        "opt_out_line": message_settings.get("opt_out_line"),
        "signature": message_settings.SIGNATURE,
        "final_text": segments.compose(
            body,
            commercial=category in COMMERCIAL_CATEGORIES,
            opt_out_line=message_settings.get("opt_out_line"),
            signature=message_settings.SIGNATURE,
        ),
    }


def _preview_for(user: User, data: svc.DraftInput, exclude_message_id: int | None = None) -> dict:
    """The audience preview for the form, or the reason it cannot be counted yet."""
    category = data.category if data.category in svc.CATEGORY_LABELS else "notice"
    try:
        spec = audience.parse(data.audience)
        audience.validate(spec, unit=user.unit, author=user, category=category)
    except DomainError as exc:
        db.session.rollback()
        return {"preview": None, "preview_error": str(exc.message)}
    counted = audience.preview(
        spec,
        unit=user.unit,
        category=category,
        send_at=data.schedule_at,
        urgent=data.urgent,
        exclude_message_id=exclude_message_id,
    )
    return {"preview": counted, "preview_error": None}


def _form_page(
    data: svc.DraftInput,
    *,
    message: Message | None = None,
    error: str | None = None,
    status: int = 200,
):
    upload = None
    upload_id = _int_arg(data.audience.get("upload_id"))
    if upload_id:
        upload = db.session.get(AudienceUpload, upload_id)
    live = _preview_for(current_user, data, message.id if message else None)
    by_carrier = live["preview"].by_carrier if live["preview"] else {}
    return render_page_or_partial(
        "messages/draft.html",
        "messages/_form.html",
        status=status,
        data=data,
        message=message,
        error=error,
        upload=upload,
        chosen=_audience_form(data.audience),
        **_choices(current_user),
        **live,
        **_counters(data.body, data.category, by_carrier),
    )


def _save(message_id: int | None):
    """Save (and, with action=submit, submit) the drafting form; re-show it on bad input."""
    message = db.session.get(Message, message_id) if message_id else None
    try:
        data = svc.draft_from_form(request.form)
    except ValidationError as exc:
        data = svc.DraftInput(
            title=request.form.get("title", ""),
            body=request.form.get("body", ""),
            category=request.form.get("category", ""),
            schedule_text=request.form.get("schedule_at", ""),
        )
        return _form_page(data, message=message, error=str(exc.message), status=exc.status)
    expected = _int_arg(request.form.get("version"))
    submit = request.form.get("action") == "submit"
    try:
        if submit:
            saved = svc.save_and_submit(current_user, data, message_id, expected)
        elif message_id is None:
            saved = svc.create_draft(current_user, data)
        else:
            saved = svc.update(message_id, current_user, data, expected)
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        if exc.status == 404:
            raise
        return _form_page(data, message=message, error=str(exc.message), status=exc.status)
    if saved.status == "pending":
        flash(_("Message #%(id)s is submitted for approval.", id=saved.id), "success")
    else:
        flash(_("Message #%(id)s is saved.", id=saved.id), "success")
    return redirect(url_for("messages.view_message", message_id=saved.id))


# ------------------------------------------------------------------ list and drafting


@bp.get("/")
@permission_required("message.view")
def list_messages():
    mine = request.args.get("mine") == "1"
    status = request.args.get("status", "")
    if status not in MESSAGE_STATUSES:
        status = ""
    page = max(request.args.get("page", 1, type=int), 1)
    size = current_app.config["PAGE_SIZE"]
    query = svc.list_query(current_user, mine=mine, status=status)
    total = db.session.execute(
        select(func.count()).select_from(query.order_by(None).subquery())
    ).scalar_one()
    rows = db.session.execute(query.offset((page - 1) * size).limit(size)).scalars().all()
    return render_page_or_partial(
        "messages/list.html",
        "messages/_list.html",
        rows=rows,
        total=total,
        page=page,
        pages=max((total + size - 1) // size, 1),
        mine=mine,
        status_filter=status,
        args=request.args,
        statuses=MESSAGE_STATUSES,
    )


@bp.get("/new")
@permission_required("message.draft")
def new_message():
    categories = svc.allowed_categories(current_user.unit)
    data = svc.DraftInput(category=categories[0])
    if current_user.unit.kind == "branch":
        data.audience = {"kind": "customers", "branches": [current_user.unit_id]}
    upload_id = _int_arg(request.args.get("upload"))
    if upload_id:
        audience.get_upload(upload_id, current_user)
        data.audience["upload_id"] = upload_id
    return _form_page(data)


@bp.post("/new")
@permission_required("message.draft")
def create_message():
    return _save(None)


@bp.get("/<int:message_id>/edit")
@permission_required("message.draft")
def edit_message(message_id: int):
    message = svc.get_visible(message_id, current_user)
    if message.author_id != current_user.id:
        flash(_("Only the author can edit a message."), "error")
        return redirect(url_for("messages.view_message", message_id=message.id))
    if message.status not in OPEN_STATUSES:
        flash(
            _("A message that is %(s)s cannot be edited.", s=svc.STATUS_LABELS[message.status]),
            "error",
        )
        return redirect(url_for("messages.view_message", message_id=message.id))
    return _form_page(_data_of(message), message=message)


@bp.post("/<int:message_id>/edit")
@permission_required("message.draft")
def update_message(message_id: int):
    message = svc.get_visible(message_id, current_user)
    if message.author_id != current_user.id:
        raise PermissionDenied(_("Only the author can edit a message."))
    return _save(message_id)


@bp.post("/counters")
@permission_required("message.draft")
def live_counters():
    """Characters, segments, recipients, cost and rule matches while the author types."""
    try:
        by_carrier = {
            str(k): int(v)
            for k, v in json.loads(request.form.get("preview_counts") or "{}").items()
        }
    except (ValueError, TypeError, AttributeError):
        by_carrier = {}
    body = (request.form.get("body") or "").replace("\r\n", "\n").strip()
    return render_partial(
        "messages/_counters.html", **_counters(body, request.form.get("category", ""), by_carrier)
    )


@bp.post("/preview")
@permission_required("message.draft")
def live_preview():
    """The audience preview for the form as it stands (R-45), and a nudge to the counters."""
    try:
        data = svc.draft_from_form(request.form)
    except ValidationError as exc:
        response = render_partial(
            "messages/_preview.html", preview=None, preview_error=str(exc.message)
        )
    else:
        response = render_partial(
            "messages/_preview.html",
            **_preview_for(current_user, data, _int_arg(request.form.get("message_id"))),
        )
    response.headers["HX-Trigger-After-Swap"] = "audience-previewed"
    return response


# ------------------------------------------------------------------ uploads


@bp.post("/uploads")
@permission_required("message.draft")
def upload_list():
    file = request.files.get("upload_file")
    try:
        upload = audience.create_upload(
            author=current_user,
            filename=file.filename if file else "",
            data=file.read(audience.UPLOAD_MAX_BYTES + 1) if file else b"",
            kind=request.form.get("upload_kind", ""),
        )
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        return render_page_or_partial(
            "messages/upload.html",
            "messages/_upload.html",
            status=exc.status,
            upload=None,
            upload_error=str(exc.message),
        )
    response = render_page_or_partial(
        "messages/upload.html", "messages/_upload.html", upload=upload
    )
    response.headers["HX-Trigger-After-Swap"] = "upload-changed"
    return response


@bp.post("/uploads/<int:upload_id>/confirm")
@permission_required("message.draft")
def confirm_upload(upload_id: int):
    upload = audience.confirm_upload(upload_id, actor=current_user)
    db.session.commit()
    if not is_partial_request():
        return redirect(url_for("messages.new_message", upload=upload.id))
    response = render_partial("messages/_upload.html", upload=upload)
    response.headers["HX-Trigger-After-Swap"] = "upload-changed"
    return response


@bp.post("/uploads/clear")
@permission_required("message.draft")
def clear_upload():
    """Take the list off the form (the upload itself stays on record)."""
    response = render_partial("messages/_upload.html", upload=None)
    response.headers["HX-Trigger-After-Swap"] = "upload-changed"
    return response


# ------------------------------------------------------------------ the message


@bp.get("/<int:message_id>")
@permission_required("message.view")
def view_message(message_id: int):
    message = svc.get_visible(message_id, current_user)
    info = svc.measure(message.body, message.category)
    if message.status in ("draft", "rejected"):
        warnings = [m.as_dict() for m in rules.check_text(message.body, message.category).warnings]
    else:
        warnings = svc.warnings_of(message)
    approvers = routing.group_members(message.route, message.route_unit_id) if message.route else []
    return render_template(
        "messages/view.html",
        message=message,
        info=info,
        warnings=warnings,
        final_text=svc.final_text(message),
        summary=svc.summary_of(message),
        spec=audience.parse(message.audience),
        approvers=[u for u in approvers if u.id != message.author_id],
        reason=routing.REASONS.get((message.route, message.route_article)),
        can_decide=svc.can_decide(current_user, message),
        can_cancel=svc.can_cancel(current_user, message),
        units={u.id: u for u in db.session.execute(select(Unit)).scalars()},
    )


@bp.get("/<int:message_id>/audience")
@permission_required("message.view")
def message_audience(message_id: int):
    """The live preview of a stored message's audience (loaded after the page)."""
    message = svc.get_visible(message_id, current_user)
    counted = audience.preview(
        audience.parse(message.audience),
        unit=message.unit,
        category=message.category,
        send_at=message.schedule_at,
        urgent=message.urgent,
        exclude_message_id=message.id,
    )
    return render_page_or_partial(
        "messages/audience.html",
        "messages/_preview.html",
        message=message,
        preview=counted,
        preview_error=None,
        readonly=True,
    )


@bp.post("/<int:message_id>/submit")
@permission_required("message.draft")
def submit_message(message_id: int):
    svc.get_visible(message_id, current_user)
    try:
        svc.submit(message_id, current_user, _int_arg(request.form.get("version")))
        db.session.commit()
        flash(_("Message #%(id)s is submitted for approval.", id=message_id), "success")
    except ValidationError as exc:
        db.session.rollback()
        flash(str(exc.message), "error")
    return redirect(url_for("messages.view_message", message_id=message_id))


@bp.post("/<int:message_id>/cancel")
@permission_required("message.view")
def cancel_message(message_id: int):
    svc.get_visible(message_id, current_user)
    svc.cancel(message_id, current_user, request.form.get("comment", ""))
    db.session.commit()
    flash(_("Message #%(id)s is cancelled.", id=message_id), "success")
    return redirect(url_for("messages.view_message", message_id=message_id))


@bp.app_context_processor
def message_labels():
    """Labels of categories, statuses, decisions, routes and exclusion reasons, for every
    template that shows messages (the inbox too)."""
    return {
        "message_labels": {
            "categories": svc.CATEGORY_LABELS,
            "statuses": svc.STATUS_LABELS,
            "decisions": svc.DECISION_LABELS,
            "routes": routing.GROUP_LABELS,
            "reasons": audience.REASON_LABELS,
            "fallback": routing.FALLBACK_REASON,
        }
    }
