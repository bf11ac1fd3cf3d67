"""The Market admin's pages for interface users (R-15, Art 16): the API clients, their
bound templates, key rotation and revocation, their rate.

A client is created by executing an interface-user permission application (access
area); here the admin looks after it. A new key (rotation) appears in the answer to
the POST only, marked no-store, like an initial password: it is in no session, no
redirect target and no database column.
"""

from __future__ import annotations

from flask import Blueprint, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from app.extensions import db
from app.htmx import is_partial_request, render_partial
from app.models import ApiClient, ApiMessage, Message
from app.security import permission_required
from app.services import api_clients
from app.services.errors import DomainError

bp = Blueprint("api_clients", __name__, url_prefix="/admin/api-clients")


@bp.app_template_filter("api_client_of")
def api_client_of(user) -> ApiClient | None:
    """The API client a system account stands for (the one-time key screen after execution)."""
    if user is None:
        return None
    return db.session.execute(
        select(ApiClient).where(ApiClient.user_id == user.id)
    ).scalar_one_or_none()


@bp.get("/")
@permission_required("admin.users")
def list_clients():
    return render_template("api_clients/list.html", clients=api_clients.list_clients())


def _detail_context(client: ApiClient, **extra) -> dict:
    recent = (
        db.session.execute(
            select(Message)
            .join(ApiMessage, ApiMessage.message_id == Message.id)
            .where(ApiMessage.client_id == client.id)
            .order_by(Message.id.desc())
            .limit(20)
        )
        .scalars()
        .all()
    )
    return {
        "client": client,
        "bindable": api_clients.bindable_templates(client),
        "recent": recent,
        **extra,
    }


@bp.get("/<int:client_id>")
@permission_required("admin.users")
def view_client(client_id: int):
    client = api_clients.get_client(client_id)
    return render_template("api_clients/view.html", **_detail_context(client))


@bp.post("/<int:client_id>/rotate")
@permission_required("admin.users")
def rotate_key(client_id: int):
    """A new key, shown in this answer only; the old key stops working at once."""
    client, key = api_clients.rotate(client_id, _actor())
    db.session.commit()
    response = make_response(
        render_template("api_clients/key.html", api_client=client, api_key=key, rotated=True)
    )
    response.headers["Cache-Control"] = "no-store, max-age=0"
    response.headers["Pragma"] = "no-cache"
    return response


@bp.post("/<int:client_id>/revoke")
@permission_required("admin.users")
def revoke_key(client_id: int):
    return _change_client(
        client_id,
        lambda: api_clients.revoke(client_id, _actor(), request.form.get("reason", "")),
        "revoke_error",
        _("The key is revoked: every call with it is refused from now on."),
    )


@bp.post("/<int:client_id>/rate")
@permission_required("admin.users")
def set_rate(client_id: int):
    return _change_client(
        client_id,
        lambda: api_clients.set_rate(client_id, _actor(), request.form.get("rate", "")),
        "rate_error",
        _("The rate is changed."),
    )


def _change_client(client_id: int, change, error_name: str, done: str):
    """Apply ``change`` and commit, then back to the client's page; a refusal shows on the
    page, next to its form (``error_name``), with nothing changed."""
    try:
        change()
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        client = api_clients.get_client(client_id)
        context = {error_name: str(exc.message), **_detail_context(client)}
        return render_template("api_clients/view.html", **context), exc.status
    flash(done, "success")
    return redirect(url_for("api_clients.view_client", client_id=client_id))


def _bindings_answer(
    client_id: int, *, done: str | None = None, error: str | None = None, status: int = 200
):
    client = api_clients.get_client(client_id)
    db.session.refresh(client)
    if is_partial_request():
        return render_partial(
            "api_clients/_bindings.html",
            status=status,
            done=done,
            error=error,
            **_detail_context(client),
        )
    if error:
        return render_template(
            "api_clients/view.html", bind_error=error, **_detail_context(client)
        ), status
    flash(done, "success")
    return redirect(url_for("api_clients.view_client", client_id=client_id))


@bp.post("/<int:client_id>/templates")
@permission_required("admin.users")
def bind_template(client_id: int):
    template_id = request.form.get("template_id", type=int)
    if template_id is None:
        return _bindings_answer(client_id, error=_("Choose a template."), status=422)
    try:
        api_clients.bind(client_id, template_id, _actor())
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        return _bindings_answer(client_id, error=str(exc.message), status=exc.status)
    return _bindings_answer(client_id, done=_("The template is bound: the key may fill it now."))


@bp.post("/<int:client_id>/templates/<int:template_id>/unbind")
@permission_required("admin.users")
def unbind_template(client_id: int, template_id: int):
    try:
        api_clients.unbind(client_id, template_id, _actor())
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        return _bindings_answer(client_id, error=str(exc.message), status=exc.status)
    return _bindings_answer(
        client_id, done=_("The template is unbound: the key may no longer fill it.")
    )


def _actor():
    from flask_login import current_user

    return current_user._get_current_object()
