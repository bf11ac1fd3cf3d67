"""API clients (R-15): creation from an interface-user application, keys stored hashed,
rotation, revocation, binding, authentication and the per-key rate (real Redis)."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import ApiClient, AuditLog, RoleChange
from app.services import api_clients
from app.services.api_clients import RateLimited, Unauthorized
from app.services.errors import Conflict, PermissionDenied, ValidationError
from tests.factories import make_api_client, make_template


def test_the_client_from_an_application_has_a_system_account_and_a_hashed_key(app, db_backend):
    client, key = make_api_client(name="资金清算系统")
    assert key.startswith("hxk_") and len(key) == 12 + 1 + 43
    assert client.key_prefix == key[:12]
    assert client.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in client.key_hash and key[12:] not in client.key_prefix
    user = client.user
    assert user.unit_id == client.unit_id and user.display_name == "资金清算系统"
    assert [r.code for r in user.roles] == ["api_client"] and not user.must_change_password
    change = db.session.execute(
        select(RoleChange).where(RoleChange.user_id == user.id)
    ).scalar_one()
    assert change.request_id == client.access_request_id
    rows = (
        db.session.execute(select(AuditLog).where(AuditLog.action == "api_client.created"))
        .scalars()
        .all()
    )
    assert len(rows) == 1 and key not in rows[0].details and client.key_prefix in rows[0].details


def test_creation_refuses_other_kinds_and_twice(app, db_backend, user):
    client, _key = make_api_client()
    request = client.access_request
    with pytest.raises(Conflict):  # executed already, and it has its client
        api_clients.create_client_for_request(request, user("admin"))
    request.status = "approved"
    with pytest.raises(Conflict):
        api_clients.create_client_for_request(request, user("admin"))
    request.kind = "new_account"
    with pytest.raises(Conflict):
        api_clients.create_client_for_request(request, user("admin"))


def test_authenticate(app, db_backend, user):
    client, key = make_api_client()
    assert api_clients.authenticate(f"Bearer {key}") is client
    assert api_clients.authenticate(f"bearer   {key}  ") is client
    for header in (
        None,
        "",
        "Bearer",
        f"Basic {key}",
        f"Bearer {key}x",
        f"Bearer {key[:-1]}",
        "Bearer hxk_00000000_" + "a" * 43,
        "Bearer " + "é" * 60,
        "Bearer " + "x" * 300,
    ):
        with pytest.raises(Unauthorized):
            api_clients.authenticate(header)
    client.user.active = False
    with pytest.raises(Unauthorized, match="停用|deactivated"):
        api_clients.authenticate(f"Bearer {key}")


def test_rotation_kills_the_old_key(app, db_backend, user):
    client, old = make_api_client()
    with pytest.raises(PermissionDenied):
        api_clients.rotate(client.id, user("bj_head"))
    _client, new = api_clients.rotate(client.id, user("admin"))
    db.session.commit()
    assert new != old and client.rotated_by_id == user("admin").id
    with pytest.raises(Unauthorized):
        api_clients.authenticate(f"Bearer {old}")
    assert api_clients.authenticate(f"Bearer {new}") is client


def test_revocation_is_final(app, db_backend, user):
    client, key = make_api_client()
    with pytest.raises(ValidationError):
        api_clients.revoke(client.id, user("admin"), "")
    api_clients.revoke(client.id, user("admin"), "系统下线")
    db.session.commit()
    with pytest.raises(Unauthorized, match="revoked|吊销|撤销|作废"):
        api_clients.authenticate(f"Bearer {key}")
    with pytest.raises(Conflict):
        api_clients.revoke(client.id, user("admin"), "again")
    with pytest.raises(Conflict):
        api_clients.rotate(client.id, user("admin"))


def test_binding_only_approved_templates_of_the_clients_unit(app, db_backend, user):
    client, _key = make_api_client()
    approved = make_template()
    draft = make_template(approve=False)
    elsewhere = make_template(author="sh_staff", approver="sh_head")
    admin = user("admin")
    with pytest.raises(ValidationError):
        api_clients.bind(client.id, draft.id, admin)
    with pytest.raises(ValidationError):
        api_clients.bind(client.id, elsewhere.id, admin)
    api_clients.bind(client.id, approved.id, admin)
    with pytest.raises(Conflict):
        api_clients.bind(client.id, approved.id, admin)
    assert api_clients.is_bound(client, approved.id)
    assert api_clients.bindable_templates(client) == []
    api_clients.unbind(client.id, approved.id, admin)
    assert not api_clients.is_bound(client, approved.id)
    with pytest.raises(Conflict):
        api_clients.unbind(client.id, approved.id, admin)
    with pytest.raises(PermissionDenied):
        api_clients.bind(client.id, approved.id, user("bj_head"))


def test_the_rate_counts_per_key_per_minute_in_redis(app, db_backend, redis_conn):
    client, _key = make_api_client(rate=3)
    other, _other_key = make_api_client(rate=3)
    states = [api_clients.check_rate(client, redis_conn) for _ in range(3)]
    assert [s.remaining for s in states] == [2, 1, 0] and states[0].limit == 3
    with pytest.raises(RateLimited) as caught:
        api_clients.check_rate(client, redis_conn)
    assert 1 <= caught.value.retry_after <= 60
    assert api_clients.check_rate(other, redis_conn).remaining == 2
    keys = redis_conn.keys(f"api:rate:{client.id}:*")
    assert len(keys) == 1 and 0 < redis_conn.ttl(keys[0]) <= 90


def test_set_rate(app, db_backend, user):
    client, _key = make_api_client()
    for bad in ("0", "10001", "x", None):
        with pytest.raises(ValidationError):
            api_clients.set_rate(client.id, user("admin"), bad)
    api_clients.set_rate(client.id, user("admin"), "120")
    assert db.session.get(ApiClient, client.id).rate_limit_per_minute == 120
