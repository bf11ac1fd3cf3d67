"""The approvers' inbox (R-48): what waits for my decision, decided in place with htmx."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, select

from app.extensions import db
from app.htmx import is_partial_request, render_partial
from app.models import Message
from app.security import permission_required
from app.services import messages as svc
from app.services.errors import DomainError
from app.views.nav import BADGES

bp = Blueprint("inbox", __name__, url_prefix="/inbox")

# Who may be in an approval group; the inbox of anyone else is simply empty.
APPROVER_PERMISSIONS = ("message.approve", "message.review_advisory")


def inbox_badge(user) -> int | None:
    """The nav badge: how many messages wait for this user (None hides it)."""
    if not user.can_any(*APPROVER_PERMISSIONS):
        return None
    return svc.inbox_count(user) or None


BADGES["inbox"] = inbox_badge


@bp.get("/")
@permission_required("message.view")
def list_pending():
    page = max(request.args.get("page", 1, type=int), 1)
    size = current_app.config["PAGE_SIZE"]
    query = svc.inbox_query(current_user)
    total = db.session.execute(
        select(func.count()).select_from(query.order_by(None).subquery())
    ).scalar_one()
    rows = db.session.execute(query.offset((page - 1) * size).limit(size)).scalars().all()
    return render_template(
        "inbox/list.html",
        items=[_item_context(m) for m in rows],
        total=total,
        page=page,
        pages=max((total + size - 1) // size, 1),
        args=request.args,
    )


def _item_context(message) -> dict:
    return {
        "m": message,
        "final_text": svc.final_text(message),
        "summary": svc.summary_of(message),
        "warnings": svc.warnings_of(message),
    }


def _decide(message_id: int, decision: str):
    """Approve or reject; the service refuses (403) anyone outside the message's group."""
    seen = request.form.get("version", type=int)
    comment = request.form.get("comment", "")
    try:
        if decision == "approve":
            message = svc.approve(message_id, current_user, seen, comment)
        else:
            message = svc.reject(message_id, current_user, seen, comment)
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        if not is_partial_request():
            raise
        message = db.session.get(Message, message_id)
        if message is None or exc.status == 404:
            raise
        return render_partial(
            "inbox/_item.html",
            status=exc.status,
            error=str(exc.message),
            comment=comment,
            **_item_context(message),
        )
    if not is_partial_request():
        flash(
            _("Message #%(id)s is approved.", id=message.id)
            if decision == "approve"
            else _("Message #%(id)s is rejected and back with its author.", id=message.id),
            "success",
        )
        return redirect(url_for("inbox.list_pending"))
    return render_partial(
        "inbox/_item.html",
        decided=decision,
        badge=svc.inbox_count(current_user),
        **_item_context(message),
    )


@bp.post("/<int:message_id>/approve")
@permission_required("message.view")
def approve(message_id: int):
    return _decide(message_id, "approve")


@bp.post("/<int:message_id>/reject")
@permission_required("message.view")
def reject(message_id: int):
    return _decide(message_id, "reject")
