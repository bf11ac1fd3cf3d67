"""Permission applications (R-10 to R-13): every kind through every step, every rejection,
the role, unit and four-eyes checks, the one-time password, late deregistrations."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from werkzeug.security import check_password_hash

from app.extensions import db
from app.models import AccessRequest, AuditLog, RoleChange, User
from app.services import access, handover
from app.services.errors import Conflict, NotInScope, PermissionDenied, ValidationError
from app.timeutil import local_today
from tests.factories import make_access_request, make_customer, make_user


def _audit(req: AccessRequest) -> list[AuditLog]:
    return list(
        db.session.execute(
            select(AuditLog)
            .where(AuditLog.target_type == "access_requests", AuditLog.target_id == str(req.id))
            .order_by(AuditLog.id)
        ).scalars()
    )


def _walk_to(req_id: int, status: str, user) -> AccessRequest:
    """Take an application from submitted to ``status`` with the demo people."""
    order = ["signed", "approved", "executed"]
    steps = {
        "signed": (access.sign, "bj_head"),
        "approved": (access.approve, "approver"),
        "executed": (access.execute, "admin"),
    }
    req = db.session.get(AccessRequest, req_id)
    for target in order[
        order.index(req.status) + 1 if req.status in order else 0 : order.index(status) + 1
    ]:
        func_, who = steps[target]
        func_(user(who), req_id)
        db.session.commit()
    return db.session.get(AccessRequest, req_id)


def _snapshot(req_id: int) -> tuple:
    db.session.expire_all()
    req = db.session.get(AccessRequest, req_id)
    audits = db.session.execute(select(func.count(AuditLog.id))).scalar_one()
    return (
        req.status,
        req.signed_by_id,
        req.approved_by_id,
        req.executed_by_id,
        req.rejected_by_id,
        audits,
    )


# ---------------------------------------------------------------- new accounts


def test_new_account_walks_every_step_and_shows_the_password_only_to_the_caller(
    app, db_backend, user
):
    req = make_access_request(
        applicant="bj_staff",
        username="bj_new",
        person_name="新员工",
        roles=["staff_sender"],
        post="客户经理",
    )
    assert req.status == "submitted" and req.signed_by_id is None
    _walk_to(req.id, "approved", user)
    result = access.execute(user("admin"), req.id)
    db.session.commit()

    new = db.session.execute(select(User).where(User.username == "bj_new")).scalar_one()
    assert result.user.id == new.id and result.request.status == "executed"
    assert new.must_change_password is True and new.active
    assert new.unit.code == "BJ01" and new.post == "客户经理" and new.display_name == "新员工"
    assert [r.code for r in new.roles] == ["staff_sender"]
    password = result.initial_password
    assert len(password) >= 12 and check_password_hash(new.password_hash, password)
    assert password not in new.password_hash
    # Never stored in clear: not in the application, the audit log or anywhere in users.
    audit_text = " ".join(row.details for row in db.session.execute(select(AuditLog)).scalars())
    assert password not in audit_text
    assert password not in json.dumps(
        {c.name: str(getattr(req, c.name)) for c in AccessRequest.__table__.columns}
    )
    req = db.session.get(AccessRequest, req.id)
    assert req.result_user_id == new.id and req.executed_by.username == "admin"
    assert [a.action for a in _audit(req)] == [
        "access.submitted",
        "access.signed",
        "access.approved",
        "access.executed",
    ]
    assert all(req.number in a.details for a in _audit(req))
    changes = (
        db.session.execute(select(RoleChange).where(RoleChange.user_id == new.id)).scalars().all()
    )
    assert [(c.role.code, c.change, c.request_id) for c in changes] == [
        ("staff_sender", "added", req.id)
    ]


def test_a_head_preparing_signs_by_the_preparation(app, db_backend, user):
    req = make_access_request(applicant="bj_head", username="bj_new2")
    assert req.status == "signed"
    assert req.signed_by_id == user("bj_head").id and req.signed_at == req.created_at
    signed = [a for a in _audit(req) if a.action == "access.signed"]
    assert len(signed) == 1 and json.loads(signed[0].details)["by_preparation"] is True
    with pytest.raises(PermissionDenied):  # there is no second signature of one's own
        access.sign(user("bj_head"), req.id)


def test_execution_refuses_a_username_taken_meanwhile(app, db_backend, user):
    req = make_access_request(applicant="bj_head", username="taken_later")
    access.approve(user("approver"), req.id)
    db.session.commit()
    make_user(username="taken_later")
    before = _snapshot(req.id)
    with pytest.raises(Conflict, match="taken_later"):
        access.execute(user("admin"), req.id)
    db.session.rollback()
    assert _snapshot(req.id) == before


# ---------------------------------------------------------------- changes


def test_change_replaces_roles_with_history_rows(app, db_backend, user):
    staff = make_user(roles=("staff_sender",), unit_code="SH01", post="柜员")
    req = make_access_request(
        applicant="sh_staff",
        kind="change",
        target_user_id=staff.id,
        roles=["unit_head"],
        post="副总经理",
    )
    access.sign(user("sh_head"), req.id)
    access.approve(user("approver"), req.id)
    result = access.execute(user("admin"), req.id)
    db.session.commit()
    db.session.refresh(staff)
    assert [r.code for r in staff.roles] == ["unit_head"] and staff.post == "副总经理"
    assert result.added == ["unit_head"] and result.removed == ["staff_sender"]
    history = {(rc.role.code, rc.change) for rc in access.role_history(staff.id)}
    assert history == {("unit_head", "added"), ("staff_sender", "removed")}
    assert all(
        rc.request_id == req.id and rc.actor.username == "admin"
        for rc in access.role_history(staff.id)
    )
    assert staff.active and staff.can("access.sign")


def test_change_must_change_something(app, db_backend, user):
    with pytest.raises(ValidationError) as exc:
        make_access_request(
            applicant="bj_head",
            kind="change",
            target_user_id=user("bj_staff").id,
            roles=["staff_sender"],
        )
    assert "roles" in exc.value.details["errors"]


# ---------------------------------------------------------------- deregistrations


def test_deregistration_deactivates_ends_sessions_and_removes_roles(app, db_backend, user):
    staff = make_user(roles=("staff_sender",))
    version = staff.session_version
    req = make_access_request(
        applicant="bj_head", kind="deregister", target_user_id=staff.id, reason="调岗"
    )
    access.approve(user("approver"), req.id)
    access.execute(user("admin"), req.id)
    db.session.commit()
    db.session.refresh(staff)
    assert staff.active is False and staff.session_version == version + 1 and staff.roles == []
    req = db.session.get(AccessRequest, req.id)
    assert req.late is False and req.result_user_id == staff.id
    assert [(rc.role.code, rc.change) for rc in access.role_history(staff.id)] == [
        ("staff_sender", "removed")
    ]


def test_deregistration_executed_after_its_effective_date_is_late(app, db_backend, user):
    staff = make_user()
    req = make_access_request(
        applicant="bj_head",
        kind="deregister",
        target_user_id=staff.id,
        effective_date=local_today() - timedelta(days=2),
    )
    assert access.is_overdue(req)
    assert [r.id for r in access.open_deregistrations()] == [req.id]
    access.approve(user("approver"), req.id)
    access.execute(user("admin"), req.id)
    db.session.commit()
    req = db.session.get(AccessRequest, req.id)
    assert req.late is True and not access.is_overdue(req)
    assert access.open_deregistrations() == []
    assert [r.id for r in access.late_deregistrations()] == [req.id]
    executed = [a for a in _audit(req) if a.action == "access.executed"][0]
    assert json.loads(executed.details)["late"] is True


def test_deregistration_is_refused_while_the_user_serves_customers(app, db_backend, user):
    staff = make_user(superior=user("bj_head"))
    make_customer(manager=staff)
    make_customer(manager=staff)
    req = make_access_request(applicant="bj_head", kind="deregister", target_user_id=staff.id)
    access.approve(user("approver"), req.id)
    db.session.commit()
    needed = access.handover_needed(req)
    assert needed.customers == 2 and needed.superior.username == "bj_head"
    assert access.preview_execution(req).blocked
    before = _snapshot(req.id)
    with pytest.raises(access.StillServesCustomers) as exc:
        access.execute(user("admin"), req.id)
    db.session.rollback()
    assert exc.value.check.customers == 2 and exc.value.status == 409
    assert _snapshot(req.id) == before and db.session.get(User, staff.id).active

    # The user hands all customers to the superior (the customers area's own step) ...
    handover.transfer_to_superior(db.session.get(User, staff.id), all_matching=True)
    db.session.commit()
    assert access.handover_needed(db.session.get(AccessRequest, req.id)) is None
    # ... and then the deregistration goes through.
    access.execute(user("admin"), req.id)
    db.session.commit()
    assert db.session.get(User, staff.id).active is False


# ---------------------------------------------------------------- rejections and withdrawal


@pytest.mark.parametrize("kind", ["new_account", "change", "deregister"])
@pytest.mark.parametrize(
    "step,who", [("sign", "bj_head"), ("approve", "approver"), ("execute", "admin")]
)
def test_each_kind_can_be_rejected_at_each_step(app, db_backend, user, kind, step, who):
    extra = {}
    if kind != "new_account":
        target = make_user(roles=("staff_sender",))
        extra = {"target_user_id": target.id}
        if kind == "change":
            extra["roles"] = ["unit_head"]
    req = make_access_request(applicant="bj_staff", kind=kind, **extra)
    previous = {"sign": None, "approve": "signed", "execute": "approved"}[step]
    if previous:
        _walk_to(req.id, previous, user)
    with pytest.raises(ValidationError):
        access.reject(user(who), req.id, "  ")
    db.session.rollback()
    access.reject(user(who), req.id, "岗位不需要此权限")
    db.session.commit()
    req = db.session.get(AccessRequest, req.id)
    assert (req.status, req.rejected_step, req.rejected_by.username) == ("rejected", step, who)
    assert req.rejection_reason == "岗位不需要此权限"
    assert _audit(req)[-1].action == "access.rejected"
    for later in (access.sign, access.approve, access.execute):
        with pytest.raises((Conflict, PermissionDenied)):
            later(
                user(
                    {"sign": "bj_head", "approve": "approver", "execute": "admin"}[later.__name__]
                ),
                req.id,
            )
    # The applicant sees the reason in their list.
    mine = db.session.execute(access.visible_query(user("bj_staff"))).scalars().all()
    assert req in mine


def test_rejecting_needs_the_role_of_the_waiting_step(app, db_backend, user):
    req = make_access_request(applicant="bj_staff")
    for who in ("approver", "admin", "sh_head", "bj_staff"):
        with pytest.raises(PermissionDenied):
            access.reject(user(who), req.id, "no")
    assert db.session.get(AccessRequest, req.id).status == "submitted"


def test_withdraw_only_by_the_applicant_and_only_while_open(app, db_backend, user):
    req = make_access_request(applicant="bj_staff")
    with pytest.raises(PermissionDenied):
        access.withdraw(user("bj_head"), req.id)
    access.withdraw(user("bj_staff"), req.id)
    db.session.commit()
    assert db.session.get(AccessRequest, req.id).status == "withdrawn"
    with pytest.raises(Conflict, match="撤回"):
        access.sign(user("bj_head"), req.id)
    with pytest.raises(Conflict):
        access.withdraw(user("bj_staff"), req.id)


# ---------------------------------------------------------------- bad input: skipped steps, roles, units


def test_skipping_a_step_is_refused_and_changes_nothing(app, db_backend, user):
    req = make_access_request(applicant="bj_staff")
    before = _snapshot(req.id)
    with pytest.raises(Conflict, match="公司审批"):
        access.execute(user("admin"), req.id)
    with pytest.raises(Conflict):
        access.approve(user("approver"), req.id)
    db.session.rollback()
    assert _snapshot(req.id) == before
    access.sign(user("bj_head"), req.id)
    db.session.commit()
    with pytest.raises(Conflict):
        access.execute(user("admin"), req.id)
    with pytest.raises(Conflict, match="已过该环节"):
        access.sign(user("bj_head"), req.id)


def test_a_head_of_another_unit_cannot_sign(app, db_backend, user):
    req = make_access_request(applicant="bj_staff")
    before = _snapshot(req.id)
    with pytest.raises(PermissionDenied, match="北京营业部"):
        access.sign(user("sh_head"), req.id)
    with pytest.raises(PermissionDenied):
        access.sign(user("bj_staff"), req.id)  # no access.sign
    db.session.rollback()
    assert _snapshot(req.id) == before


def test_nobody_approves_their_own_application(app, db_backend, user):
    both = make_user(roles=("staff_sender", "company_approver"))
    req = make_access_request(applicant=both.username)
    access.sign(user("bj_head"), req.id)
    db.session.commit()
    before = _snapshot(req.id)
    with pytest.raises(PermissionDenied, match="由您填写"):
        access.approve(both, req.id)
    db.session.rollback()
    assert _snapshot(req.id) == before
    assert access.allowed_actions(both, req) == {"withdraw"}


def test_the_signer_does_not_also_approve(app, db_backend, user):
    head_approver = make_user(roles=("unit_head", "company_approver"))
    req = make_access_request(applicant="bj_staff")
    access.sign(head_approver, req.id)
    db.session.commit()
    with pytest.raises(PermissionDenied):
        access.approve(head_approver, req.id)


def test_nobody_handles_an_application_about_their_own_account(app, db_backend, user):
    deputy = make_user(roles=("unit_head",))
    req = make_access_request(
        applicant="bj_staff",
        kind="change",
        target_user_id=user("bj_head").id,
        roles=["unit_head", "staff_sender"],
    )
    with pytest.raises(PermissionDenied, match="本人的账户"):
        access.sign(user("bj_head"), req.id)
    assert req not in access.inbox(user("bj_head"), "sign")
    assert req in access.inbox(deputy, "sign")
    access.sign(deputy, req.id)
    db.session.commit()
    # The admin may not execute a change of their own roles either.
    own = make_access_request(
        applicant="admin",
        kind="change",
        target_user_id=user("admin").id,
        roles=["market_admin"],
        data_scope="all",
    )
    assert own.status == "submitted"  # the head preparing about themselves does not sign it


def test_execution_waits_for_the_effective_date(app, db_backend, user):
    req = make_access_request(applicant="bj_head", effective_date=local_today() + timedelta(days=3))
    access.approve(user("approver"), req.id)
    db.session.commit()
    assert access.preview_execution(req).too_early
    with pytest.raises(Conflict, match="生效"):
        access.execute(user("admin"), req.id)


# ---------------------------------------------------------------- the form's validation


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"person_name": ""}, "person_name"),
        ({"username": "x"}, "username"),
        ({"username": "admin"}, "username"),
        ({"username": "has space"}, "username"),
        ({"roles": []}, "roles"),
        ({"roles": ["api_client"]}, "roles"),
        ({"roles": ["no_such_role"]}, "roles"),
        ({"roles": ["staff_sender"], "data_scope": "all"}, "data_scope"),
        ({"roles": ["auditor"], "data_scope": "unit"}, "data_scope"),
        ({"reason": " "}, "reason"),
        ({"reason": "x" * 1001}, "reason"),
        ({"effective_date": "2026-13-40"}, "effective_date"),
        ({"effective_date": "2062-01-01"}, "effective_date"),
        ({"post": "岗" * 101}, "post"),
    ],
)
def test_bad_new_account_input_names_the_field_and_writes_nothing(
    app, db_backend, user, overrides, field
):
    count = db.session.execute(select(func.count(AccessRequest.id))).scalar_one()
    with pytest.raises(ValidationError) as exc:
        make_access_request(applicant="bj_staff", **overrides)
    assert field in exc.value.details["errors"]
    db.session.rollback()
    assert db.session.execute(select(func.count(AccessRequest.id))).scalar_one() == count


def test_all_units_scope_goes_with_an_all_units_role(app, db_backend, user):
    req = make_access_request(applicant="admin", roles=["auditor"], data_scope="all")
    assert req.data_scope == "all" and "auditor" in access.all_unit_role_codes()


def test_change_and_deregister_name_a_member_of_the_unit(app, db_backend, user):
    with pytest.raises(ValidationError, match="不是本部门人员"):
        make_access_request(
            applicant="bj_staff", kind="deregister", target_user_id=user("sh_staff").id
        )
    with pytest.raises(ValidationError):
        make_access_request(applicant="bj_staff", kind="deregister", target_user_id=None)
    staff = make_user()
    make_access_request(applicant="bj_staff", kind="deregister", target_user_id=staff.id)
    with pytest.raises(ValidationError, match="尚未办结"):
        make_access_request(
            applicant="bj_head", kind="change", target_user_id=staff.id, roles=["unit_head"]
        )


def test_usernames_applied_for_are_reserved(app, db_backend, user):
    make_access_request(applicant="bj_staff", username="reserved1")
    with pytest.raises(ValidationError, match="(?i)reserved1"):
        make_access_request(applicant="sh_staff", username="Reserved1")


def test_interface_users_are_open_and_roles_need_access_request(app, db_backend, user):
    req = make_access_request(
        applicant="bj_staff",
        kind="interface_user",
        person_name="资金清算系统",
        roles=["market_admin"],
    )
    assert (req.kind, req.roles, req.data_scope) == ("interface_user", ["api_client"], "unit")
    with pytest.raises(PermissionDenied):
        make_access_request(applicant="approver")


# ---------------------------------------------------------------- who sees what


def test_visibility_and_inboxes(app, db_backend, user):
    req = make_access_request(applicant="bj_staff")
    for who in ("bj_staff", "bj_head", "approver", "admin", "auditor"):
        assert access.get_request(user(who), req.id) is req
    for who in ("sh_staff", "sh_head", "bj_staff_other"):
        if who == "bj_staff_other":
            other = make_user()
            with pytest.raises(NotInScope):
                access.get_request(other, req.id)
            continue
        with pytest.raises(NotInScope):
            access.get_request(user(who), req.id)
    assert access.inbox(user("bj_head"), "sign") == [req]
    assert access.inbox(user("sh_head"), "sign") == []
    assert access.inbox_count(user("bj_head")) == 1 and access.inbox_count(user("approver")) == 0
    assert access.allowed_actions(user("bj_head"), req) == {"sign", "reject"}
    assert access.allowed_actions(user("bj_staff"), req) == {"withdraw"}
    access.sign(user("bj_head"), req.id)
    db.session.commit()
    assert access.inbox(user("approver"), "approve") == [req]
    assert access.inbox_count(user("bj_head")) == 0
    access.approve(user("approver"), req.id)
    db.session.commit()
    assert (
        access.inbox(user("admin"), "execute") == [req] and access.inbox_count(user("admin")) == 1
    )
    assert access.inbox_steps(user("admin")) == ["sign", "execute"]
    assert access.inbox_steps(user("bj_staff")) == []
