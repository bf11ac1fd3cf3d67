"""Send progress on the message page (R-53): the live progress partial, the recipients
by outcome, the per-message CSV, and the operator's retry of unknown outcomes (R-52).

The message page (messages area) includes ``sending/_progress.html``; the partial polls
``/messages/<id>/progress`` every two seconds and stops once it renders a finished send.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select

from app.extensions import db
from app.htmx import is_partial_request, render_page_or_partial, render_partial
from app.models import Customer, Recipient
from app.models.sending import RECIPIENT_STATUSES
from app.security import permission_required
from app.services import audit, messages, scope, sending
from app.services.csv_export import stream_csv
from app.timeutil import to_local

bp = Blueprint("sending", __name__)

STATUS_LABELS = {
    "queued": _l("Queued"),
    "submitted": _l("Submitted"),
    "delivered": _l("Delivered"),
    "failed": _l("Failed"),
    "suppressed": _l("Suppressed"),
    "unknown": _l("Outcome unknown"),
}
STATE_LABELS = {
    "waiting": _l("Waiting to be sent"),
    "building": _l("Preparing recipients"),
    "sending": _l("Sending"),
    "done": _l("Sent"),
}
# Statuses of a message for which the progress box has something to say.
_SHOWN = ("approved", "sending", "sent")


@bp.app_template_filter("recipient_status")
def recipient_status_label(status: str) -> str:
    return str(STATUS_LABELS.get(status, status))


OWN_REASONS = {sending.LOST_REASON: _l("Outcome lost: the worker stopped while submitting")}


@bp.app_template_filter("recipient_reason")
def recipient_reason_label(reason: str) -> str:
    """Suppression codes of the audience select and our own codes in words; gateway
    reasons as the gateway gave them."""
    from app.services.audience import REASON_LABELS

    label = REASON_LABELS.get(reason) or OWN_REASONS.get(reason)
    return str(label) if label is not None else (reason or "")


def progress_context(message) -> dict:
    """What ``sending/_progress.html`` needs; the message page passes it on include."""
    shown = message.status in _SHOWN
    progress = sending.progress(message.id) if shown else None
    return {
        "send_message": message,
        "send_progress": progress,
        "send_shown": shown,
        "send_state_labels": STATE_LABELS,
        "send_cost": sending.total_cost(message.id) if progress and progress.run else None,
    }


@bp.get("/messages/<int:message_id>/progress")
@permission_required("message.view")
def progress(message_id: int):
    message = messages.get_visible(message_id, current_user)
    return render_partial("sending/_progress.html", **progress_context(message))


@bp.post("/messages/<int:message_id>/retry-unknown")
@permission_required("send.retry")
def retry_unknown(message_id: int):
    message = messages.get_visible(message_id, current_user)
    count = sending.retry_unknown(message.id, actor=current_user)
    flash(_("%(n)s recipient(s) with an unknown outcome are queued again.", n=count), "success")
    if is_partial_request():
        db.session.expire_all()
        return render_partial("sending/_progress.html", **progress_context(message))
    return redirect(url_for("sending.list_recipients", message_id=message.id))


def _recipient_query(message_id: int, status: str):
    query = (
        select(Recipient, Customer.name, Customer.crm_id)
        .outerjoin(Customer, Customer.id == Recipient.customer_id)
        .where(Recipient.message_id == message_id)
    )
    if status in RECIPIENT_STATUSES:
        query = query.where(Recipient.status == status)
    return query


@bp.get("/messages/<int:message_id>/recipients")
@permission_required("message.view")
def list_recipients(message_id: int):
    """Recipients by outcome, keyset-paged by id (a message may have a million)."""
    message = messages.get_visible(message_id, current_user)
    status = request.args.get("status", "")
    after = max(request.args.get("after", 0, type=int), 0)
    size = current_app.config["PAGE_SIZE"]
    rows = db.session.execute(
        _recipient_query(message.id, status)
        .where(Recipient.id > after)
        .order_by(Recipient.id)
        .limit(size + 1)
    ).all()
    more = len(rows) > size
    rows = rows[:size]
    return render_page_or_partial(
        "sending/recipients.html",
        "sending/_recipients.html",
        send_message=message,
        rows=rows,
        outcome=status,
        statuses=RECIPIENT_STATUSES,
        counts=sending.outcome_counts(message.id),
        status_labels=STATUS_LABELS,
        next_after=rows[-1][0].id if more else None,
        after=after,
    )


@bp.get("/messages/<int:message_id>/recipients.csv")
@permission_required("message.view")
def export_recipients(message_id: int):
    """Every recipient of the message as CSV (Excel-friendly), mobiles as the user may see them."""
    message = messages.get_visible(message_id, current_user)
    status = request.args.get("status", "")
    full_mobiles = current_user.can("customer.view_full_mobile")
    audit.record(
        "message.recipients_exported",
        actor=current_user,
        target=message,
        details={"status": status or "all"},
    )
    db.session.commit()
    header = [
        _("Recipient"),
        _("CRM id"),
        _("Name"),
        _("Mobile"),
        _("Outcome"),
        _("Reason"),
        _("Segments"),
        _("Cost (yuan)"),
        _("Attempts"),
        _("Submitted"),
        _("Finished"),
    ]

    def fmt(moment):
        return to_local(moment).strftime("%Y-%m-%d %H:%M:%S") if moment else ""

    columns = (
        Recipient.id,
        Customer.crm_id,
        Customer.name,
        Recipient.mobile,
        Recipient.status,
        Recipient.reason,
        Recipient.segments,
        Recipient.cost,
        Recipient.attempts,
        Recipient.submitted_at,
        Recipient.finished_at,
    )

    def rows():
        # Plain rows, not ORM objects: a million of them must not pile up in the session.
        after = 0
        while True:
            query = (
                select(*columns)
                .outerjoin(Customer, Customer.id == Recipient.customer_id)
                .where(Recipient.message_id == message.id, Recipient.id > after)
            )
            if status in RECIPIENT_STATUSES:
                query = query.where(Recipient.status == status)
            chunk = db.session.execute(query.order_by(Recipient.id).limit(5000)).all()
            if not chunk:
                return
            for (
                rid,
                crm_id,
                name,
                mobile,
                outcome,
                reason,
                segs,
                cost,
                attempts,
                submitted_at,
                finished_at,
            ) in chunk:
                yield [
                    rid,
                    crm_id or "",
                    name or "",
                    mobile if full_mobiles else scope.mask_mobile(mobile),
                    recipient_status_label(outcome),
                    recipient_reason_label(reason),
                    segs,
                    cost,
                    attempts,
                    fmt(submitted_at),
                    fmt(finished_at),
                ]
            after = chunk[-1][0]

    filename = f"message-{message.id}-recipients.csv"
    return Response(
        stream_with_context(stream_csv(header, rows())),
        mimetype="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
