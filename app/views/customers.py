"""Customer pages: list and search, detail with consent and history, handover, verification
list (R-03, R-23, R-24, R-31, R-32). Thin views over ``app.services.customers``,
``consent``, ``handover`` and ``mobile_checks``."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from app.extensions import db
from app.htmx import is_partial_request, render_page_or_partial, render_partial
from app.models.customers import CONSENT_STATES, RISK_LEVELS
from app.security import permission_required
from app.services import consent, handover, mobile_checks
from app.services import customers as svc
from app.services.customers import CustomerFilters
from app.services.errors import DomainError
from app.views.nav import BADGES

bp = Blueprint("customers", __name__, url_prefix="/customers")

EVENT_LABELS = {
    "consent": _l("Consent"),
    "mobile_changed": _l("Mobile changed"),
    "manager_changed": _l("Serving staff changed"),
    "handed_over": _l("Handed over"),
    "assigned": _l("Assigned"),
    "closed": _l("Closed"),
    "reopened": _l("Reopened"),
    "branch_changed": _l("Branch changed"),
    "mobile_checked": _l("Mobile checked"),
}
CARRIER_LABELS = {
    "china_mobile": _l("China Mobile"),
    "china_unicom": _l("China Unicom"),
    "china_telecom": _l("China Telecom"),
    "china_broadnet": _l("China Broadnet"),
    "unknown": _l("carrier unknown"),
}
MOBILE_REASONS = {"invalid": _l("invalid"), "doubtful": _l("doubtful"), "valid": _l("valid")}

BADGES["customers_to_assign"] = lambda user: handover.awaiting_count(user) or None
BADGES["customers_checks"] = lambda user: mobile_checks.open_count(user) or None


@bp.app_template_filter("consent_label")
def consent_label(state: str) -> str:
    return consent.state_label(state)


@bp.app_template_filter("channel_label")
def channel_label(channel: str) -> str:
    return consent.channel_label(channel)


def _page_size() -> int:
    return current_app.config["PAGE_SIZE"]


def _page() -> int:
    return max(request.args.get("page", 1, type=int) or 1, 1)


def _filter_choices(filters: CustomerFilters) -> dict:
    return {
        "branches": svc.branches_in_scope(current_user),
        "staff": svc.staff_in_scope(current_user, filters.branch_id),
        "consent_states": CONSENT_STATES,
        "risk_levels": RISK_LEVELS,
    }


# ---------------------------------------------------------------- list and detail


@bp.get("/")
@permission_required("customer.view")
def list_customers():
    filters = CustomerFilters.from_args(request.args)
    result = svc.search(current_user, filters, page=_page(), per_page=_page_size())
    return render_page_or_partial(
        "customers/list.html",
        "customers/_rows.html",
        result=result,
        filters=filters,
        **_filter_choices(filters),
    )


def _detail_context(customer, **extra) -> dict:
    return {
        "customer": customer,
        "entries": svc.timeline(customer.id),
        "event_labels": EVENT_LABELS,
        "mobile_reasons": MOBILE_REASONS,
        "carrier_labels": CARRIER_LABELS,
        **extra,
    }


@bp.get("/<int:customer_id>")
@permission_required("customer.view")
def view_customer(customer_id: int):
    customer = svc.get_customer(current_user, customer_id)
    return render_template("customers/detail.html", **_detail_context(customer))


@bp.post("/<int:customer_id>/consent")
@permission_required("customer.consent_update")
def update_consent(customer_id: int):
    """Branch staff mark a customer refused, or agreed with evidence (Art 26(2)2)."""
    customer = svc.get_customer(current_user, customer_id)
    state = request.form.get("state", "")
    evidence = request.form.get("evidence", "")
    try:
        consent.change_consent(
            customer.id, state, channel="branch_staff", actor=current_user, evidence=evidence
        )
    except DomainError as exc:
        if exc.status in (403, 404):
            raise
        db.session.rollback()
        customer = svc.get_customer(current_user, customer_id)
        context = _detail_context(
            customer, error=str(exc.message), form_state=state, form_evidence=evidence
        )
        if is_partial_request():
            return render_partial("customers/_consent.html", status=exc.status, **context)
        return render_template("customers/detail.html", **context), exc.status
    db.session.commit()
    db.session.refresh(customer)
    message = _("Consent recorded: %(state)s.", state=consent.state_label(customer.consent))
    if is_partial_request():
        return render_partial(
            "customers/_consent.html",
            oob_timeline=True,
            notice=message,
            **_detail_context(customer),
        )
    flash(message, "success")
    return redirect(url_for("customers.view_customer", customer_id=customer.id))


# ---------------------------------------------------------------- handover


def _selection_from_form() -> dict:
    form = request.form
    return {
        "customer_ids": form.getlist("ids"),
        "all_matching": form.get("all") == "1",
        "filters": CustomerFilters.from_args(form),
    }


@bp.get("/mine")
@permission_required("customer.handover")
def list_mine():
    filters = CustomerFilters.from_args(request.args)
    query = handover.my_customers_query(current_user, filters)
    result = svc.paginate(query, page=_page(), per_page=_page_size(), cap=None, filters=filters)
    return render_page_or_partial(
        "customers/mine.html",
        "customers/_mine_rows.html",
        result=result,
        filters=filters,
        selected=set(),
        superior=current_user.superior,
        **_filter_choices(filters),
    )


@bp.post("/mine/review")
@permission_required("customer.handover")
def review_transfer():
    """The confirmation step: what would move, to whom; nothing is written yet."""
    selection = _selection_from_form()
    try:
        preview = handover.preview_transfer(current_user, **selection)
    except DomainError as exc:
        if exc.status == 404:
            raise
        return _mine_with_error(selection, exc)
    return render_template(
        "customers/transfer_confirm.html",
        preview=preview,
        ids=selection["customer_ids"],
        all_matching=selection["all_matching"],
        filters=selection["filters"],
    )


@bp.post("/mine/transfer")
@permission_required("customer.handover")
def transfer_customers():
    selection = _selection_from_form()
    expected = request.form.get("expected", type=int)
    try:
        moved = handover.transfer_to_superior(
            current_user, expected_count=expected, note=request.form.get("note", ""), **selection
        )
    except DomainError as exc:
        if exc.status == 404:
            raise
        db.session.rollback()
        return _mine_with_error(selection, exc)
    db.session.commit()
    flash(
        _(
            "%(n)s customers were handed over to %(name)s.",
            n=moved.customer_count,
            name=moved.to_user.display_name,
        ),
        "success",
    )
    return redirect(url_for("customers.list_mine"))


@bp.post("/handover/in-place-of/<int:user_id>")
@permission_required("customer.view")
def transfer_for_departing(user_id: int):
    """The superior or the Market admin hands a departed user's customers to the superior."""
    moved = handover.transfer_for_departing(
        current_user, user_id, note=request.form.get("note", "")
    )
    db.session.commit()
    flash(
        _(
            "%(n)s customers were handed over to %(name)s.",
            n=moved.customer_count,
            name=moved.to_user.display_name,
        ),
        "success",
    )
    target = request.form.get("next", "")
    if not target.startswith("/") or target.startswith("//"):
        target = url_for("main.dashboard")
    return redirect(target)


def _mine_with_error(selection: dict, exc: DomainError):
    filters = selection["filters"]
    query = handover.my_customers_query(current_user, filters)
    result = svc.paginate(query, page=1, per_page=_page_size(), cap=None, filters=filters)
    return render_template(
        "customers/mine.html",
        result=result,
        filters=filters,
        selected={str(i) for i in selection["customer_ids"]},
        all_checked=selection["all_matching"],
        error=str(exc.message),
        superior=current_user.superior,
        **_filter_choices(filters),
    ), exc.status


@bp.get("/to-assign")
@permission_required("customer.assign")
def list_to_assign():
    filters = CustomerFilters.from_args(request.args)
    return _to_assign_page(filters)


def _to_assign_page(filters: CustomerFilters, *, status: int = 200, **extra):
    query = handover.to_assign_query(current_user, filters)
    result = svc.paginate(query, page=_page(), per_page=_page_size(), cap=None, filters=filters)
    context = {
        "result": result,
        "filters": filters,
        "users": handover.assignable_users(current_user),
        "selected": set(),
        **_filter_choices(filters),
        **extra,
    }
    if status != 200:
        return render_template("customers/to_assign.html", **context), status
    return render_page_or_partial(
        "customers/to_assign.html", "customers/_assign_rows.html", **context
    )


@bp.post("/to-assign")
@permission_required("customer.assign")
def assign_customers():
    selection = _selection_from_form()
    to_user_id = request.form.get("to_user", type=int)
    expected = request.form.get("expected", type=int) if selection["all_matching"] else None
    try:
        moved = handover.assign(
            current_user,
            to_user_id,
            expected_count=expected,
            note=request.form.get("note", ""),
            **selection,
        )
    except DomainError as exc:
        if exc.status == 404:
            raise
        db.session.rollback()
        return _to_assign_page(
            selection["filters"],
            status=exc.status,
            error=str(exc.message),
            selected={str(i) for i in selection["customer_ids"]},
            all_checked=selection["all_matching"],
            to_user_id=to_user_id,
        )
    db.session.commit()
    flash(
        _(
            "%(n)s customers were assigned to %(name)s.",
            n=moved.customer_count,
            name=moved.to_user.display_name,
        ),
        "success",
    )
    return redirect(url_for("customers.list_to_assign"))


# ---------------------------------------------------------------- verification list


@bp.get("/checks")
@permission_required("customer.verify_mobile")
def list_checks():
    branch_id = request.args.get("branch", type=int)
    query = mobile_checks.open_checks_query(current_user, branch_id)
    page = db.paginate(query, page=_page(), per_page=_page_size(), error_out=False)
    return render_template(
        "customers/checks.html",
        checks=page.items,
        page=page.page,
        pages=max(page.pages, 1),
        total=page.total,
        branch_id=branch_id,
        branches=svc.branches_in_scope(current_user),
        mobile_reasons=MOBILE_REASONS,
    )


@bp.post("/checks/<int:check_id>")
@permission_required("customer.verify_mobile")
def mark_check(check_id: int):
    check = mobile_checks.get_check(current_user, check_id)
    note = request.form.get("note", "")
    try:
        mobile_checks.mark_checked(check.id, actor=current_user, note=note)
    except DomainError as exc:
        if exc.status in (403, 404):
            raise
        db.session.rollback()
        check = mobile_checks.get_check(current_user, check_id)
        if is_partial_request():
            return render_partial(
                "customers/_check_row.html",
                status=exc.status,
                check=check,
                error=str(exc.message),
                form_note=note,
                mobile_reasons=MOBILE_REASONS,
            )
        flash(str(exc.message), "error")
        return redirect(url_for("customers.list_checks"))
    db.session.commit()
    if is_partial_request():
        return render_partial(
            "customers/_check_row.html",
            check=check,
            mobile_reasons=MOBILE_REASONS,
            open_left=mobile_checks.open_count(current_user),
        )
    flash(_("The number of %(name)s is marked checked.", name=check.customer.name), "success")
    return redirect(url_for("customers.list_checks"))
