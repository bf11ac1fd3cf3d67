"""Permission applications (R-10 to R-13): the form, the lists, the step inbox, execution,
the printable form, and the panels on the dashboard and the admin's user page.

Views parse the request, call one function of ``app.services.access`` and render; the
decision box (``_decision.html``) is the one piece of markup htmx swaps after a step.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import func, select

from app.extensions import db
from app.htmx import is_partial_request, render_page_or_partial, render_partial
from app.models import AccessRequest, Role
from app.models.access import ACCESS_STATUSES, OPEN_STATUSES
from app.security import login_required, permission_required
from app.services import access
from app.services.errors import Conflict, DomainError, PermissionDenied, ValidationError
from app.timeutil import local_today
from app.views.nav import BADGES, DASHBOARD_PANELS, USER_PANELS

bp = Blueprint("access", __name__, url_prefix="/access")

KIND_LABELS = {
    "new_account": _l("New account"),
    "change": _l("Change of permissions"),
    "deregister": _l("Deregistration"),
    "interface_user": _l("Interface user"),
}
STATUS_LABELS = {
    "submitted": _l("Waiting for the unit head"),
    "signed": _l("Waiting for company approval"),
    "approved": _l("Waiting for execution"),
    "executed": _l("Executed"),
    "rejected": _l("Rejected"),
    "withdrawn": _l("Withdrawn"),
}
STEP_LABELS = {
    "sign": _l("Unit head's signature"),
    "approve": _l("Company approval"),
    "execute": _l("Execution by the Market admin"),
}
SCOPE_LABELS = {"unit": _l("Own unit"), "all": _l("All units")}
FORM_FIELDS = (
    "kind",
    "person_name",
    "post",
    "target_user_id",
    "username",
    "superior_id",
    "data_scope",
    "reason",
    "effective_date",
)


@bp.app_template_filter("access_kind")
def access_kind(kind: str) -> str:
    return str(KIND_LABELS.get(kind, kind))


@bp.app_template_filter("access_status")
def access_status(status: str) -> str:
    return str(STATUS_LABELS.get(status, status))


@bp.app_template_filter("access_step")
def access_step(step: str) -> str:
    return str(STEP_LABELS.get(step, step))


@bp.app_template_filter("access_scope")
def access_scope(scope: str) -> str:
    return str(SCOPE_LABELS.get(scope, scope))


def _role_names() -> dict[str, str]:
    """Role code → the role's name in the UI language, for showing requested role codes."""
    zh = str(get_locale() or "zh").startswith("zh")
    return {
        r.code: (r.name if zh else r.name_en) for r in db.session.execute(select(Role)).scalars()
    }


def _page_context(**extra) -> dict:
    return {"role_names": _role_names(), "today": local_today(), **extra}


# ---------------------------------------------------------------- lists


@bp.get("/")
@login_required
def list_requests():
    """Every application the viewer may read (own, own unit's for heads, all for the company)."""
    status = request.args.get("status", "")
    kind = request.args.get("kind", "")
    page = max(request.args.get("page", 1, type=int), 1)
    size = current_app.config["PAGE_SIZE"]
    query = access.visible_query(current_user)
    if status == "open":
        query = query.where(AccessRequest.status.in_(OPEN_STATUSES))
    elif status in ACCESS_STATUSES:
        query = query.where(AccessRequest.status == status)
    if kind in KIND_LABELS:
        query = query.where(AccessRequest.kind == kind)
    total = db.session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = (
        db.session.execute(
            query.order_by(AccessRequest.id.desc()).offset((page - 1) * size).limit(size)
        )
        .scalars()
        .all()
    )
    return render_page_or_partial(
        "access/list.html",
        "access/_table.html",
        **_page_context(
            requests=rows,
            total=total,
            page=page,
            pages=max((total + size - 1) // size, 1),
            status_filter=status,
            kind_filter=kind,
            statuses=ACCESS_STATUSES,
            kinds=access.PREPARABLE_KINDS,
        ),
    )


@bp.get("/inbox")
@login_required
def inbox():
    """What waits for the viewer's steps: signatures for heads, approvals for the company,
    executions for the Market admin; each item is decided in place."""
    steps = access.inbox_steps(current_user)
    sections = [(step, access.inbox(current_user, step)) for step in steps]
    actions = {
        req.id: access.allowed_actions(current_user, req)
        for _step, reqs in sections
        for req in reqs
    }
    return render_template("access/inbox.html", **_page_context(sections=sections, actions=actions))


# ---------------------------------------------------------------- the form


def _form_values(source) -> dict:
    values = {name: (source.get(name) or "").strip() for name in FORM_FIELDS}
    values["kind"] = values["kind"] if values["kind"] in access.PREPARABLE_KINDS else "new_account"
    values["roles"] = [c for c in source.getlist("roles") if c]
    values["data_scope"] = values["data_scope"] or "unit"
    values["effective_date"] = values["effective_date"] or local_today().isoformat()
    return values


def _int_or_none(value: str) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _form_page(
    form: dict, *, errors: dict | None = None, error: str | None = None, status: int = 200
):
    members = access.unit_members(current_user.unit_id)
    return render_page_or_partial(
        "access/new.html",
        "access/_form.html",
        status=status,
        **_page_context(
            form=form,
            errors=errors or {},
            error=error,
            members=members,
            roles=access.requestable_roles(),
            wide_roles=access.all_unit_role_codes(),
            kinds=access.PREPARABLE_KINDS,
        ),
    )


@bp.get("/new")
@permission_required("access.request")
def new_request():
    """The application form (Appendix 1); htmx re-renders it when the kind changes."""
    return _form_page(_form_values(request.args))


@bp.post("/new")
@permission_required("access.request")
def create_request():
    form = _form_values(request.form)
    try:
        req = access.prepare(
            current_user,
            kind=form["kind"],
            person_name=form["person_name"],
            post=form["post"],
            target_user_id=_int_or_none(form["target_user_id"]),
            username=form["username"],
            superior_id=_int_or_none(form["superior_id"]),
            roles=form["roles"],
            data_scope=form["data_scope"],
            reason=form["reason"],
            effective_date=form["effective_date"],
        )
        db.session.commit()
    except ValidationError as exc:
        db.session.rollback()
        return _form_page(
            form, errors=exc.details.get("errors", {}), error=str(exc.message), status=exc.status
        )
    if req.status == "signed":
        flash(
            _(
                "Application %(number)s is submitted; as head of the unit your preparation is its "
                "signature. It now waits for company approval.",
                number=req.number,
            ),
            "success",
        )
    else:
        flash(
            _(
                "Application %(number)s is submitted and waits for the signature of your unit's "
                "head.",
                number=req.number,
            ),
            "success",
        )
    return redirect(url_for("access.view_request", request_id=req.id))


# ---------------------------------------------------------------- one application


@bp.get("/<int:request_id>")
@login_required
def view_request(request_id: int):
    req = access.get_request(current_user, request_id)
    return render_template(
        "access/view.html",
        **_page_context(
            req=req,
            actions=access.allowed_actions(current_user, req),
            handover=access.handover_needed(req),
        ),
    )


@bp.get("/<int:request_id>/print")
@login_required
def print_request(request_id: int):
    """The form for the paper file: A4, every signature with name and time, lines for ink."""
    req = access.get_request(current_user, request_id)
    return render_template("access/print.html", **_page_context(req=req))


def _decision_response(
    req: AccessRequest,
    *,
    message: str | None = None,
    error: str | None = None,
    status: int = 200,
    **extra,
):
    """The decision box for htmx, the whole page otherwise (errors only; success redirects)."""
    ctx = _page_context(
        req=req,
        actions=access.allowed_actions(current_user, req),
        message=message,
        error=error,
        handover=access.handover_needed(req),
        **extra,
    )
    if is_partial_request():
        return render_partial("access/_decision.html", status=status, **ctx)
    return render_template("access/view.html", **ctx), status


def _decide(request_id: int, step, done_message, *args):
    try:
        req = step(current_user, request_id, *args)
        db.session.commit()
    except (PermissionDenied, Conflict, ValidationError) as exc:
        db.session.rollback()
        req = access.get_request(current_user, request_id)
        return _decision_response(req, error=str(exc.message), status=exc.status)
    message = done_message(req)
    if is_partial_request():
        extra = {}
        if step is not access.withdraw:
            # The decider had this item in their inbox, so the nav badge exists to update.
            extra["badge"] = access.inbox_count(current_user)
        return _decision_response(req, message=message, **extra)
    flash(message, "success")
    return redirect(url_for("access.view_request", request_id=req.id))


@bp.post("/<int:request_id>/sign")
@permission_required("access.sign")
def sign_request(request_id: int):
    return _decide(
        request_id,
        access.sign,
        lambda r: _("Signed. The application now waits for company approval."),
    )


@bp.post("/<int:request_id>/approve")
@permission_required("access.approve")
def approve_request(request_id: int):
    return _decide(
        request_id,
        access.approve,
        lambda r: _("Approved. The Market admin can now execute the application."),
    )


@bp.post("/<int:request_id>/reject")
@login_required
def reject_request(request_id: int):
    """Reject at the step the application waits for; the service checks the step's role."""
    return _decide(
        request_id,
        access.reject,
        lambda r: _("Rejected. The applicant sees your reason."),
        request.form.get("reason", ""),
    )


@bp.post("/<int:request_id>/withdraw")
@permission_required("access.request")
def withdraw_request(request_id: int):
    return _decide(request_id, access.withdraw, lambda r: _("The application is withdrawn."))


# ---------------------------------------------------------------- execution


def _execute_page(req: AccessRequest, *, error: str | None = None, status: int = 200):
    preview = access.preview_execution(req) if req.status == "approved" else None
    return render_template(
        "access/execute.html",
        **_page_context(
            req=req,
            preview=preview,
            error=error,
            handover=preview.handover if preview else None,
            actions=access.allowed_actions(current_user, req),
        ),
    ), status


@bp.get("/<int:request_id>/execute")
@permission_required("access.execute")
def execute_screen(request_id: int):
    """What executing will do. After execution it says the password is not shown again."""
    return _execute_page(access.get_request(current_user, request_id))


@bp.post("/<int:request_id>/execute")
@permission_required("access.execute")
def execute_request(request_id: int):
    """Carry out the application. A new account's initial password appears in this response
    only (no-store): it is in no session, no redirect target and no database column."""
    try:
        result = access.execute(current_user, request_id)
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        return _execute_page(
            access.get_request(current_user, request_id), error=str(exc.message), status=exc.status
        )
    if result.initial_password is None:
        flash(_("Application %(number)s is executed.", number=result.request.number), "success")
        return redirect(url_for("access.view_request", request_id=result.request.id))
    response = make_response(
        render_template(
            "access/executed.html",
            **_page_context(
                req=result.request, new_user=result.user, password=result.initial_password
            ),
        )
    )
    response.headers["Cache-Control"] = "no-store, max-age=0"
    response.headers["Pragma"] = "no-cache"
    return response


# ---------------------------------------------------------------- panels elsewhere


def _dashboard_panel(viewer):
    """Open and late deregistrations for the Market admin (R-12); what waits for the viewer;
    the handover reminder for a user whose own deregistration waits for it (R-13)."""
    waiting = access.inbox_count(viewer) if access.inbox_steps(viewer) else 0
    own = access.open_deregistration_about(viewer)
    handover = access.handover_needed(own) if own else None
    if not viewer.can("access.execute") and not waiting and not handover:
        return None
    ctx = {"access_waiting": waiting, "access_own_deregistration": own, "access_handover": handover}
    if viewer.can("access.execute"):
        ctx["access_open_deregistrations"] = access.open_deregistrations()
        ctx["access_late_deregistrations"] = access.late_deregistrations()
        ctx["access_today"] = local_today()
    return "access/_dashboard_panel.html", ctx


def _user_panel(viewer, user):
    """The user's applications and the full history of their roles (issue 6, item 8)."""
    return "access/_user_panel.html", {
        "access_requests": access.requests_about(user.id),
        "access_role_history": access.role_history(user.id),
    }


DASHBOARD_PANELS.append(_dashboard_panel)
USER_PANELS.append(_user_panel)
BADGES["access_inbox"] = lambda user: access.inbox_count(user) or None
