"""The branch's mobile verification list (R-23, Art 24)."""

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AuditLog, CustomerEvent, MobileCheck
from app.services import mobile_checks
from app.services.errors import Conflict, NotInScope, ValidationError
from tests.factories import make_customer, make_mobile_check


def test_open_checks_are_per_branch(app, user, db_backend):
    bj = make_mobile_check()
    sh = make_mobile_check(make_customer(branch_code="SH01", mobile="139"), reason="doubtful")
    make_mobile_check(status="checked")
    listed = db.session.execute(mobile_checks.open_checks_query(user("bj_staff"))).scalars().all()
    assert [c.id for c in listed] == [bj.id]
    every = db.session.execute(mobile_checks.open_checks_query(user("admin"))).scalars().all()
    assert {c.id for c in every} == {bj.id, sh.id}
    assert mobile_checks.open_count(user("sh_staff")) == 1
    with pytest.raises(NotInScope):
        mobile_checks.open_checks_query(user("bj_staff"), branch_id=sh.branch_id)


def test_mark_checked_writes_event_and_audit(app, user, db_backend):
    check = make_mobile_check()
    staff = user("bj_staff")
    mobile_checks.mark_checked(check.id, actor=staff, note="已电话核实, CRM 已更正")
    db.session.commit()
    check = db.session.get(MobileCheck, check.id)
    assert (check.status, check.checked_by_id, check.note) == (
        "checked",
        staff.id,
        "已电话核实, CRM 已更正",
    )
    event = db.session.execute(
        select(CustomerEvent).where(CustomerEvent.customer_id == check.customer_id)
    ).scalar_one()
    assert (event.kind, event.old_value, event.note) == (
        "mobile_checked",
        check.mobile,
        "已电话核实, CRM 已更正",
    )
    assert db.session.execute(
        select(AuditLog).where(AuditLog.action == "customer.mobile_checked")
    ).scalar_one().target_id == str(check.id)
    with pytest.raises(Conflict):
        mobile_checks.mark_checked(check.id, actor=staff, note="again")


def test_mark_checked_needs_a_note_and_scope(app, user, db_backend):
    check = make_mobile_check()
    with pytest.raises(ValidationError):
        mobile_checks.mark_checked(check.id, actor=user("bj_staff"), note="  ")
    with pytest.raises(NotInScope):
        mobile_checks.mark_checked(check.id, actor=user("sh_staff"), note="checked")
    db.session.rollback()
    assert db.session.get(MobileCheck, check.id).status == "open"
