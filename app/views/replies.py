"""The branches' reply inbox (R-34, Art 26(2)): customers' replies the system could not
apply by itself, handled by staff: close it, set consent with the reply as evidence, or
add a note. Thin views over ``app.services.replies``."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import func, select

from app.extensions import db
from app.models import Message, Unit
from app.security import permission_required
from app.services import replies
from app.services.errors import Conflict, ValidationError
from app.views.nav import BADGES

bp = Blueprint("replies", __name__, url_prefix="/replies")

INTENT_LABELS = {"agree": _l("Agrees"), "refuse": _l("Refuses"), "other": _l("Other text")}
STATUS_LABELS = {
    "open": _l("To handle"),
    "handled": _l("Handled"),
    "auto": _l("Applied automatically"),
}

BADGES["reply_inbox"] = lambda user: (
    (replies.open_count(user) or None) if user.can("reply.handle") else None
)


@bp.app_template_filter("reply_intent")
def reply_intent(intent: str) -> str:
    return str(INTENT_LABELS.get(intent, intent))


@bp.app_template_filter("reply_outcome")
def reply_outcome(outcome: str) -> str:
    return replies.outcome_label(outcome)


@bp.app_template_filter("reply_status")
def reply_status(status: str) -> str:
    return str(STATUS_LABELS.get(status, status))


@bp.get("")
@permission_required("reply.handle")
def inbox():
    status = request.args.get("status", "open")
    if status not in ("open", "handled", "auto", "all"):
        status = "open"
    page = max(request.args.get("page", 1, type=int), 1)
    size = current_app.config["PAGE_SIZE"]
    query = replies.inbox_query(current_user, status=status)
    total = db.session.execute(
        select(func.count()).select_from(query.order_by(None).subquery())
    ).scalar_one()
    rows = db.session.execute(query.offset((page - 1) * size).limit(size)).scalars().all()
    unit_names = dict(db.session.execute(select(Unit.id, Unit.name)).all())
    return render_template(
        "replies/inbox.html",
        replies=rows,
        status=status,
        total=total,
        page=page,
        pages=max((total + size - 1) // size, 1),
        unit_names=unit_names,
        statuses=STATUS_LABELS,
    )


def _detail(reply_id: int, status: int = 200):
    reply = replies.get_reply(current_user, reply_id)
    message = db.session.get(Message, reply.message_id) if reply.message_id else None
    unit = db.session.get(Unit, reply.unit_id) if reply.unit_id else None
    return render_template(
        "replies/detail.html",
        reply=reply,
        message=message,
        unit=unit,
        customers=replies.customers_for(current_user, reply),
    ), status


@bp.get("/<int:reply_id>")
@permission_required("reply.handle")
def view_reply(reply_id: int):
    return _detail(reply_id)


@bp.post("/<int:reply_id>/handled")
@permission_required("reply.handle")
def mark_handled(reply_id: int):
    return _act(
        reply_id,
        lambda: replies.mark_handled(current_user, reply_id),
        _("The reply is marked as handled."),
    )


@bp.post("/<int:reply_id>/consent")
@permission_required("reply.handle", "customer.consent_update")
def set_consent(reply_id: int):
    state = request.form.get("state", "")
    customer_id = request.form.get("customer_id", type=int)
    return _act(
        reply_id,
        lambda: replies.set_consent(current_user, reply_id, state=state, customer_id=customer_id),
        _("Consent is recorded with the reply as evidence; the reply is handled."),
    )


@bp.post("/<int:reply_id>/notes")
@permission_required("reply.handle")
def add_note(reply_id: int):
    text = request.form.get("text", "")
    return _act(
        reply_id, lambda: replies.add_note(current_user, reply_id, text), _("The note is added.")
    )


def _act(reply_id: int, action, done: str):
    """Run one inbox action; a refused one is flashed on the reply page (nothing changed)."""
    try:
        action()
    except (ValidationError, Conflict) as exc:
        db.session.rollback()
        flash(str(exc.message), "error")
    else:
        db.session.commit()
        flash(done, "success")
    return redirect(url_for("replies.view_reply", reply_id=reply_id))
