"""The call centre's opt-out page (R-32, Art 25): find customers by the number a caller
gives, opt out all of them or one, with a note, in two clicks."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from app.extensions import db
from app.htmx import is_partial_request, render_page_or_partial
from app.security import permission_required
from app.services import consent
from app.services import customers as svc
from app.services.errors import DomainError, ValidationError

bp = Blueprint("callcentre", __name__, url_prefix="/callcentre")


def _lookup(mobile: str) -> dict:
    """The customers with ``mobile`` in the agent's scope, or an error for a bad number."""
    mobile = (mobile or "").strip()
    if not mobile:
        return {"mobile": "", "customers": [], "searched": False}
    number = svc.normalize_mobile(mobile)
    if not (number.isdigit() and len(number) == 11):
        return {
            "mobile": mobile,
            "customers": [],
            "searched": False,
            "error": _("Enter the 11-digit mobile number the caller gives."),
        }
    found = svc.customers_by_mobile(current_user, number)
    return {
        "mobile": number,
        "customers": found,
        "searched": True,
        "refusable": sum(1 for c in found if c.consent != "refused"),
    }


def _render(status: int = 200, **extra):
    context = {**_lookup(extra.pop("mobile", request.values.get("mobile", ""))), **extra}
    if context.get("error") and status == 200:
        status = 422
    return render_page_or_partial(
        "callcentre/index.html", "callcentre/_results.html", status=status, **context
    )


@bp.get("/")
@permission_required("customer.opt_out")
def find_customers():
    return _render()


@bp.post("/opt-out")
@permission_required("customer.opt_out")
def opt_out():
    """Opt out one customer (``customer_id``) or every customer with ``mobile``."""
    mobile = request.form.get("mobile", "")
    customer_id = request.form.get("customer_id", type=int)
    note = request.form.get("note", "")
    try:
        if customer_id:
            customer = svc.get_customer(current_user, customer_id)
            if customer.mobile != svc.normalize_mobile(mobile):
                raise ValidationError(_("This customer does not have the number searched for."))
            consent.change_consent(
                customer.id, "refused", channel="call_centre", actor=current_user, evidence=note
            )
            changed = 1
        else:
            changed = consent.refuse_by_mobile(
                mobile, channel="call_centre", evidence=note, actor=current_user
            )
    except DomainError as exc:
        if exc.status in (403, 404):
            raise
        db.session.rollback()
        return _render(status=exc.status, mobile=mobile, error=str(exc.message))
    db.session.commit()
    if changed:
        message = _("%(n)s customers opted out: they will receive no more SMS.", n=changed)
    else:
        message = _("Every customer with this number had refused already; nothing changed.")
    if is_partial_request():
        return _render(mobile=mobile, notice=message)
    flash(message, "success")
    return redirect(url_for("callcentre.find_customers", mobile=svc.normalize_mobile(mobile)))
