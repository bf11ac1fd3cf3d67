"""Content rules and message settings, for the Market admin (R-43, R-44, R-46, R-49)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from app.extensions import db
from app.htmx import is_partial_request, render_page_or_partial, render_partial
from app.models import ContentRule
from app.models.messages import CATEGORIES, RULE_ACTIONS, RULE_KINDS
from app.security import permission_required
from app.services import message_settings, rules
from app.services.errors import DomainError, NotFound

bp = Blueprint("rules", __name__, url_prefix="/rules")


def _rule_form(form) -> dict:
    return {
        "pattern": form.get("pattern", ""),
        "is_regex": form.get("is_regex") == "1",
        "match_on": form.get("match_on", "text"),
        "kind": form.get("kind", ""),
        "action": form.get("action", ""),
        "note": form.get("note", ""),
    }


def _list_page(status: int = 200, **extra):
    rows = db.session.execute(select(ContentRule).order_by(ContentRule.id)).scalars().all()
    return render_template(
        "rules/list.html", rows=rows, kinds=RULE_KINDS, actions=RULE_ACTIONS, **extra
    ), status


@bp.get("/")
@permission_required("admin.rules")
def list_rules():
    return _list_page(form={})


@bp.post("/")
@permission_required("admin.rules")
def create_rule():
    values = _rule_form(request.form)
    try:
        rule = rules.create_rule(values, actor=current_user)
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        return _list_page(status=exc.status, form=values, error=str(exc.message))
    flash(_("Rule #%(id)s is added.", id=rule.id), "success")
    return redirect(url_for("rules.list_rules"))


@bp.get("/<int:rule_id>/edit")
@permission_required("admin.rules")
def edit_rule(rule_id: int):
    rule = db.session.get(ContentRule, rule_id)
    if rule is None:
        raise NotFound()
    return render_template(
        "rules/edit.html", rule=rule, form=None, kinds=RULE_KINDS, actions=RULE_ACTIONS
    )


@bp.post("/<int:rule_id>/edit")
@permission_required("admin.rules")
def update_rule(rule_id: int):
    values = _rule_form(request.form)
    try:
        rules.update_rule(rule_id, values, actor=current_user)
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        if exc.status == 404:
            raise
        rule = db.session.get(ContentRule, rule_id)
        return render_template(
            "rules/edit.html",
            rule=rule,
            form=values,
            kinds=RULE_KINDS,
            actions=RULE_ACTIONS,
            error=str(exc.message),
        ), exc.status
    flash(_("Rule #%(id)s is saved.", id=rule_id), "success")
    return redirect(url_for("rules.list_rules"))


@bp.post("/<int:rule_id>/active")
@permission_required("admin.rules")
def toggle_rule(rule_id: int):
    rule = rules.set_active(rule_id, request.form.get("active") == "1", actor=current_user)
    db.session.commit()
    if is_partial_request():
        return render_partial("rules/_row.html", rule=rule)
    return redirect(url_for("rules.list_rules"))


@bp.post("/try")
@permission_required("admin.rules")
def try_text():
    """Run the active rules over a sample text, as the drafting page would."""
    text = request.form.get("text", "")
    category = request.form.get("category", "notice")
    if category not in CATEGORIES:
        category = "notice"
    return render_page_or_partial(
        "rules/try.html",
        "rules/_try.html",
        text=text,
        category=category,
        checked=rules.check_text(text, category),
    )


@bp.get("/settings")
@permission_required("admin.rules")
def settings():
    return render_template(
        "rules/settings.html",
        values=message_settings.all_settings(),
        categories=CATEGORIES,
        carriers=message_settings.CARRIERS,
    )


@bp.post("/settings")
@permission_required("admin.rules")
def save_settings():
    form = request.form
    caps = {
        c: {
            "day": form.get(f"cap_{c}_day", "0") or "0",
            "week": form.get(f"cap_{c}_week", "0") or "0",
        }
        for c in CATEGORIES
    }
    values = {
        "caps": caps,
        "quiet_hours": {
            "start": form.get("quiet_start", "").strip(),
            "end": form.get("quiet_end", "").strip(),
        },
        "rates": {
            c: form.get(f"rate_{c}", "").strip()
            for c in (*message_settings.CARRIERS, "default")
            if form.get(f"rate_{c}", "").strip()
        },
        "opt_out_line": form.get("opt_out_line", ""),
        "link_domains": [d for d in form.get("link_domains", "").replace(",", "\n").splitlines()],
    }
    try:
        changed = message_settings.save(values, actor=current_user)
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        shown = message_settings.all_settings()
        return render_template(
            "rules/settings.html",
            values=shown,
            categories=CATEGORIES,
            carriers=message_settings.CARRIERS,
            error=str(exc.message),
            form=form,
        ), exc.status
    flash(_("Settings saved.") if changed else _("Nothing changed."), "success")
    return redirect(url_for("rules.settings"))


@bp.context_processor
def rule_labels():
    return {
        "rule_kind_labels": {
            "illegal": _("Illegal content"),
            "third_party_ad": _("Third-party advertising"),
            "advisory_wording": _("Advisory wording"),
            "other": _("Other"),
        },
        "rule_action_labels": {"block": _("Block"), "warn": _("Warn")},
        "carrier_labels": {
            "china_mobile": _("China Mobile"),
            "china_unicom": _("China Unicom"),
            "china_telecom": _("China Telecom"),
            "default": _("Other carriers"),
        },
    }
