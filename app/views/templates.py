"""Approved templates (R-15, R-42): authors write and submit them, the approvers of the
route decide them in place, the Market admin binds approved ones to API clients.

Templates go along the route messages take, but the approvers' inbox (messages area)
lists messages only, so pending templates have their own list here (``/templates/pending``),
with the count on the nav entry.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, select

from app.extensions import db
from app.htmx import is_partial_request, render_page_or_partial, render_partial
from app.models import ApiClientTemplate, MessageTemplate
from app.models.api import TEMPLATE_CATEGORIES
from app.security import permission_required
from app.services import messages as message_service
from app.services import routing, rules, templates
from app.services.errors import DomainError, ValidationError
from app.views.nav import BADGES

bp = Blueprint("templates", __name__, url_prefix="/templates")

APPROVER_PERMISSIONS = ("message.approve", "message.review_advisory")


def pending_badge(user) -> int | None:
    """The nav badge: templates waiting for this user's decision (None hides it)."""
    if not user.can_any(*APPROVER_PERMISSIONS):
        return None
    return templates.pending_count(user) or None


BADGES["templates_pending"] = pending_badge


@bp.app_context_processor
def template_labels():
    return {
        "template_labels": {
            "statuses": templates.STATUS_LABELS,
            "decisions": templates.DECISION_LABELS,
        }
    }


def _page_args(total: int) -> tuple[int, int, int]:
    page = max(request.args.get("page", 1, type=int), 1)
    size = current_app.config["PAGE_SIZE"]
    return page, size, max((total + size - 1) // size, 1)


def _context(template: MessageTemplate, **extra) -> dict:
    """What a template's page and its decision box show."""
    return {
        "t": template,
        "final_text": templates.final_text(template),
        "info": templates.estimate(template.content, template.category),
        "variables": templates.variables_in(template.content),
        "can_decide": templates.can_decide(current_user, template),
        **extra,
    }


# ---------------------------------------------------------------- lists


@bp.get("/")
@permission_required("message.view")
def list_templates():
    """The templates of the viewer's unit (every unit's for those who see all)."""
    status = request.args.get("status", "")
    query = templates.list_query(current_user, status=status)
    total = db.session.execute(
        select(func.count()).select_from(query.order_by(None).subquery())
    ).scalar_one()
    page, size, pages = _page_args(total)
    rows = db.session.execute(query.offset((page - 1) * size).limit(size)).scalars().all()
    bound = (
        dict(
            db.session.execute(
                select(ApiClientTemplate.template_id, func.count())
                .where(ApiClientTemplate.template_id.in_([t.id for t in rows]))
                .group_by(ApiClientTemplate.template_id)
            ).all()
        )
        if rows
        else {}
    )
    return render_page_or_partial(
        "templates/list.html",
        "templates/_table.html",
        rows=rows,
        total=total,
        page=page,
        pages=pages,
        status_filter=status,
        bound=bound,
    )


@bp.get("/pending")
@permission_required("message.view")
def list_pending():
    """Templates waiting for the viewer's decision, each decided in place (empty for
    those in no approver group)."""
    rows = db.session.execute(templates.pending_query(current_user)).scalars().all()
    return render_template("templates/pending.html", items=[_context(t) for t in rows])


# ---------------------------------------------------------------- author's side


def _form_page(
    data: templates.TemplateInput, *, template=None, error=None, field=None, status: int = 200
):
    info = templates.estimate(data.content, data.category) if data.content else None
    return render_page_or_partial(
        "templates/edit.html",
        "templates/_form.html",
        status=status,
        data=data,
        t=template,
        error=error,
        field=field,
        info=info,
        variables=templates.variables_in(data.content),
        categories=[
            c
            for c in TEMPLATE_CATEGORIES
            if c in message_service.allowed_categories(current_user.unit)
        ],
    )


@bp.get("/new")
@permission_required("message.draft")
def new_template():
    return _form_page(templates.TemplateInput(category="notice"))


@bp.post("/new")
@permission_required("message.draft")
def create_template():
    data = templates.input_from_form(request.form)
    try:
        template = templates.create(current_user, data)
        if request.form.get("action") == "submit":
            templates.submit(template.id, current_user)
        db.session.commit()
    except ValidationError as exc:
        db.session.rollback()
        return _form_page(
            data, error=str(exc.message), field=exc.details.get("field"), status=exc.status
        )
    flash(
        _("Template saved and sent for approval.")
        if template.status == "pending"
        else _("Template saved as a draft."),
        "success",
    )
    return redirect(url_for("templates.view_template", template_id=template.id))


@bp.get("/<int:template_id>")
@permission_required("message.view")
def view_template(template_id: int):
    template = templates.get_visible(template_id, current_user)
    warnings = (
        rules.check_text(template.content, template.category).warnings
        if template.status in ("draft", "rejected")
        else None
    )
    approvers = (
        routing.group_members(template.route, template.route_unit_id) if template.route else []
    )
    clients = [
        b.client
        for b in db.session.execute(
            select(ApiClientTemplate).where(ApiClientTemplate.template_id == template.id)
        ).scalars()
    ]
    return render_template(
        "templates/view.html",
        **_context(
            template,
            live_warnings=[w.as_dict() for w in warnings] if warnings is not None else None,
            approvers=[u for u in approvers if u.id != template.author_id],
            reason=routing.REASONS.get((template.route, template.route_article)),
            clients=clients,
        ),
    )


@bp.get("/<int:template_id>/edit")
@permission_required("message.draft")
def edit_template(template_id: int):
    template = templates.get_visible(template_id, current_user)
    if template.author_id != current_user.id:
        abort(403)
    data = templates.TemplateInput(
        name=template.name,
        category=template.category,
        content=template.content,
        urgent=template.urgent,
    )
    return _form_page(data, template=template)


@bp.post("/<int:template_id>/edit")
@permission_required("message.draft")
def update_template(template_id: int):
    template = templates.get_visible(template_id, current_user)
    data = templates.input_from_form(request.form)
    was_approved = template.status == "approved"
    try:
        template = templates.update(
            template_id, current_user, data, request.form.get("version", type=int)
        )
        if request.form.get("action") == "submit" and template.status == "draft":
            templates.submit(template.id, current_user)
        db.session.commit()
    except ValidationError as exc:
        db.session.rollback()
        return _form_page(
            data,
            template=templates.get_visible(template_id, current_user),
            error=str(exc.message),
            field=exc.details.get("field"),
            status=exc.status,
        )
    if was_approved:
        flash(
            _(
                "The template changed, so its approval is void: it went back to its approvers. API sends cannot use it until it is approved again."
            ),
            "warning",
        )
    else:
        flash(_("Template saved."), "success")
    return redirect(url_for("templates.view_template", template_id=template.id))


@bp.post("/<int:template_id>/submit")
@permission_required("message.draft")
def submit_template(template_id: int):
    templates.submit(template_id, current_user, request.form.get("version", type=int))
    db.session.commit()
    flash(_("Template sent for approval."), "success")
    return redirect(url_for("templates.view_template", template_id=template_id))


# ---------------------------------------------------------------- approver's side


def _decide(template_id: int, decision: str):
    if not current_user.can_any(*APPROVER_PERMISSIONS):
        abort(403)
    seen = request.form.get("version", type=int)
    comment = request.form.get("comment", "")
    try:
        if decision == "approve":
            template = templates.approve(template_id, current_user, seen, comment)
        else:
            template = templates.reject(template_id, current_user, seen, comment)
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        if not is_partial_request() or exc.status == 404:
            raise
        template = templates.get_visible(template_id, current_user)
        return render_partial(
            "templates/_decision.html",
            status=exc.status,
            error=str(exc.message),
            comment=comment,
            **_context(template),
        )
    if not is_partial_request():
        flash(
            _("Template #%(id)s is approved.", id=template.id)
            if decision == "approve"
            else _("Template #%(id)s is rejected and back with its author.", id=template.id),
            "success",
        )
        return redirect(url_for("templates.list_pending"))
    return render_partial(
        "templates/_decision.html",
        decided=decision,
        badge=templates.pending_count(current_user),
        **_context(template),
    )


@bp.post("/<int:template_id>/approve")
@permission_required("message.view")
def approve_template(template_id: int):
    return _decide(template_id, "approve")


@bp.post("/<int:template_id>/reject")
@permission_required("message.view")
def reject_template(template_id: int):
    return _decide(template_id, "reject")
