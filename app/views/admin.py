"""Market admin pages: units, users and roles (R-01, R-02)."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import func, or_, select

from app.extensions import db
from app.models import LoginEvent, Role, Unit, User
from app.permissions import PERMISSIONS
from app.security import permission_required
from app.services import auth, org
from app.services.errors import NotFound, ValidationError
from app.views.nav import USER_PANELS, collect_panels

bp = Blueprint("admin", __name__, url_prefix="/admin")

LOGIN_REASONS = {
    "unknown_user": _l("unknown user"),
    "inactive": _l("account deactivated"),
    "locked": _l("account locked"),
    "locked_now": _l("wrong password; account now locked"),
    "bad_password": _l("wrong password"),
}


@bp.get("/units")
@permission_required("admin.units")
def list_units():
    counts = dict(
        db.session.execute(
            select(User.unit_id, func.count(User.id))
            .where(User.active.is_(True))
            .group_by(User.unit_id)
        ).all()
    )
    units = db.session.execute(select(Unit).order_by(Unit.kind.desc(), Unit.code)).scalars().all()
    return render_template("admin/units.html", units=units, counts=counts)


@bp.get("/units/<int:unit_id>")
@permission_required("admin.units")
def view_unit(unit_id: int):
    unit = db.session.get(Unit, unit_id) or _missing()
    return render_template("admin/unit.html", unit=unit)


@bp.get("/users")
@permission_required("admin.users")
def list_users():
    q = request.args.get("q", "").strip()
    unit_id = request.args.get("unit", type=int)
    page = max(request.args.get("page", 1, type=int), 1)
    size = current_app.config["PAGE_SIZE"]
    query = select(User)
    if q:
        like = f"%{q}%"
        query = query.where(or_(User.username.ilike(like), User.display_name.ilike(like)))
    if unit_id:
        query = query.where(User.unit_id == unit_id)
    total = db.session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    users = (
        db.session.execute(query.order_by(User.username).offset((page - 1) * size).limit(size))
        .scalars()
        .all()
    )
    units = db.session.execute(select(Unit).order_by(Unit.code)).scalars().all()
    return render_template(
        "admin/users.html",
        users=users,
        units=units,
        q=q,
        unit_id=unit_id,
        page=page,
        pages=max((total + size - 1) // size, 1),
        total=total,
    )


@bp.get("/users/<int:user_id>")
@permission_required("admin.users")
def view_user(user_id: int):
    user = db.session.get(User, user_id) or _missing()
    logins = (
        db.session.execute(
            select(LoginEvent)
            .where(LoginEvent.user_id == user.id)
            .order_by(LoginEvent.id.desc())
            .limit(50)
        )
        .scalars()
        .all()
    )
    panels, context = collect_panels(USER_PANELS, current_user, user)
    return render_template(
        "admin/user.html",
        user=user,
        logins=logins,
        login_reasons=LOGIN_REASONS,
        user_panels=panels,
        **context,
    )


@bp.post("/users/<int:user_id>/unlock")
@permission_required("admin.users")
def unlock_user(user_id: int):
    user = db.session.get(User, user_id) or _missing()
    auth.unlock(user, actor=current_user)
    flash(_("The account %(name)s is unlocked.", name=user.username), "success")
    return redirect(url_for("admin.view_user", user_id=user.id))


@bp.post("/users/<int:user_id>/mobile")
@permission_required("admin.users")
def set_user_mobile(user_id: int):
    """The work mobile the user's internal notices go to."""
    user = db.session.get(User, user_id) or _missing()
    try:
        org.set_mobile(user, request.form.get("mobile", ""), actor=current_user)
    except ValidationError as exc:
        db.session.rollback()
        flash(str(exc.message), "error")
    else:
        db.session.commit()
        flash(_("The work mobile of %(name)s is saved.", name=user.username), "success")
    return redirect(url_for("admin.view_user", user_id=user.id))


@bp.get("/roles")
@permission_required("admin.users")
def list_roles():
    roles = db.session.execute(select(Role).order_by(Role.code)).scalars().all()
    return render_template("admin/roles.html", roles=roles, permissions=PERMISSIONS)


def _missing():
    raise NotFound()
