"""The consent state machine (R-30, R-32, R-34, R-35): one service, immutable events."""

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import DatabaseError

from app.extensions import db
from app.models import AuditLog, ConsentEvent, Customer
from app.services import consent
from app.services.errors import Conflict, NotFound, NotInScope, PermissionDenied, ValidationError
from tests.factories import make_customer


def _events(customer_id):
    return (
        db.session.execute(
            select(ConsentEvent)
            .where(ConsentEvent.customer_id == customer_id)
            .order_by(ConsentEvent.id)
        )
        .scalars()
        .all()
    )


def _audit_count(action):
    return db.session.execute(
        select(func.count(AuditLog.id)).where(AuditLog.action == action)
    ).scalar_one()


def test_branch_staff_refusal_writes_event_and_audit(app, user, db_backend):
    c = make_customer(consent="agreed")
    staff = user("bj_staff")
    event = consent.change_consent(
        c.id, "refused", channel="branch_staff", actor=staff, evidence="客户来电要求退订"
    )
    db.session.commit()
    db.session.refresh(c)
    assert c.consent == "refused" and c.consent_changed_at == event.at
    (e,) = _events(c.id)
    assert (e.old_state, e.new_state, e.channel, e.actor_id, e.evidence) == (
        "agreed",
        "refused",
        "branch_staff",
        staff.id,
        "客户来电要求退订",
    )
    row = db.session.execute(
        select(AuditLog).where(AuditLog.action == "customer.consent_changed")
    ).scalar_one()
    assert row.target_type == "customers" and row.target_id == str(c.id)
    assert '"new": "refused"' in row.details and row.actor_id == staff.id


def test_branch_staff_agreement_needs_evidence(app, user, db_backend):
    c = make_customer(consent="undetermined")
    with pytest.raises(ValidationError):
        consent.change_consent(
            c.id, "agreed", channel="branch_staff", actor=user("bj_staff"), evidence="   "
        )
    db.session.rollback()
    assert db.session.get(Customer, c.id).consent == "undetermined"
    assert _events(c.id) == []
    consent.change_consent(
        c.id,
        "agreed",
        channel="branch_staff",
        actor=user("bj_staff"),
        evidence="客户签署《短信服务确认书》第 0012 号",
    )
    db.session.commit()
    assert db.session.get(Customer, c.id).consent == "agreed"


def test_refusal_by_staff_needs_no_note(app, user, db_backend):
    c = make_customer(consent="undetermined")
    consent.change_consent(c.id, "refused", channel="branch_staff", actor=user("bj_staff"))
    db.session.commit()
    assert _events(c.id)[0].evidence == ""


def test_no_op_change_is_a_conflict(app, user, db_backend):
    c = make_customer(consent="refused")
    with pytest.raises(Conflict):
        consent.change_consent(c.id, "refused", channel="branch_staff", actor=user("bj_staff"))
    assert _events(c.id) == []


@pytest.mark.parametrize(
    "state, channel",
    [
        ("agreed", "call_centre"),  # the call centre takes opt-outs only (Art 25)
        ("undetermined", "branch_staff"),  # nobody "un-decides" a customer by hand
        ("undetermined", "sms_reply"),
        ("maybe", "branch_staff"),
        ("refused", "carrier_pigeon"),
    ],
)
def test_forbidden_transitions(app, user, db_backend, state, channel):
    c = make_customer(consent="agreed" if state != "agreed" else "refused")
    actor = user("callcenter") if channel == "call_centre" else user("bj_staff")
    with pytest.raises(ValidationError):
        consent.change_consent(c.id, state, channel=channel, actor=actor, evidence="x")
    db.session.rollback()
    assert _events(c.id) == []


def test_actor_needs_the_channel_permission(app, user, db_backend):
    c = make_customer(consent="agreed")
    with pytest.raises(PermissionDenied):  # staff are not call-centre agents
        consent.change_consent(c.id, "refused", channel="call_centre", actor=user("bj_staff"))
    with pytest.raises(PermissionDenied):  # agents are not branch staff
        consent.change_consent(c.id, "refused", channel="branch_staff", actor=user("callcenter"))
    with pytest.raises(PermissionDenied):  # a person's channel needs the person
        consent.change_consent(c.id, "refused", channel="branch_staff", actor=None)
    assert _events(c.id) == []


def test_actor_scope_is_checked(app, user, db_backend):
    c = make_customer(consent="agreed", branch_code="SH01")
    with pytest.raises(NotInScope):
        consent.change_consent(c.id, "refused", channel="branch_staff", actor=user("bj_staff"))
    assert db.session.get(Customer, c.id).consent == "agreed"
    consent.change_consent(
        c.id, "refused", channel="call_centre", actor=user("callcenter"), evidence="来电退订"
    )
    db.session.commit()
    assert db.session.get(Customer, c.id).consent == "refused"


def test_missing_customer(app, user, db_backend):
    with pytest.raises(NotFound):
        consent.change_consent(999999, "refused", channel="branch_staff", actor=user("bj_staff"))


def test_reply_needs_its_text_and_agree_is_idempotent(app, db_backend):
    c = make_customer(consent="undetermined")
    with pytest.raises(ValidationError):
        consent.agree_by_reply(c.id, evidence="")
    event = consent.agree_by_reply(c.id, evidence="Y")
    db.session.commit()
    assert (event.channel, event.actor_id, event.evidence, event.old_state) == (
        "sms_reply",
        None,
        "Y",
        "undetermined",
    )
    assert consent.agree_by_reply(c.id, evidence="Y") is None  # a repeated reply writes nothing
    db.session.commit()
    assert len(_events(c.id)) == 1


def test_system_channel_may_reset_to_undetermined_with_a_reason(app, db_backend):
    c = make_customer(consent="agreed")
    with pytest.raises(ValidationError):
        consent.change_consent(c.id, "undetermined", channel="system", actor=None)
    consent.change_consent(
        c.id, "undetermined", channel="system", actor=None, evidence="CRM 更正: 重复开户"
    )
    db.session.commit()
    assert db.session.get(Customer, c.id).consent == "undetermined"


def test_refuse_by_mobile_changes_every_customer_with_the_number(app, db_backend):
    a = make_customer(mobile="13900001111", consent="agreed")
    b = make_customer(mobile="13900001111", consent="undetermined", branch_code="SH01")
    done = make_customer(mobile="13900001111", consent="refused")
    other = make_customer(mobile="13900002222", consent="agreed")
    n = consent.refuse_by_mobile("+86 139 0000 1111", channel="sms_reply", evidence="TD")
    db.session.commit()
    assert n == 2
    states = dict(db.session.execute(select(Customer.id, Customer.consent)).all())
    assert states[a.id] == states[b.id] == states[done.id] == "refused"
    assert states[other.id] == "agreed"
    ea, eb = _events(a.id), _events(b.id)
    assert [(e.old_state, e.new_state, e.channel, e.evidence) for e in ea] == [
        ("agreed", "refused", "sms_reply", "TD")
    ]
    assert eb[0].old_state == "undetermined" and eb[0].actor_id is None
    assert _events(done.id) == [] and _events(other.id) == []
    assert db.session.get(Customer, a.id).consent_changed_at == ea[0].at
    assert _audit_count("customer.consent_refused_by_mobile") == 1
    # The same reply again changes nothing and writes nothing.
    assert consent.refuse_by_mobile("13900001111", channel="sms_reply", evidence="TD") == 0
    db.session.commit()
    assert _audit_count("customer.consent_refused_by_mobile") == 1


def test_refuse_by_mobile_respects_the_actors_scope(app, user, db_backend):
    bj = make_customer(mobile="13900003333", consent="agreed")
    sh = make_customer(mobile="13900003333", consent="agreed", branch_code="SH01")
    n = consent.refuse_by_mobile(
        "13900003333", channel="branch_staff", evidence="", actor=user("bj_staff")
    )
    db.session.commit()
    assert n == 1
    assert db.session.get(Customer, bj.id).consent == "refused"
    assert db.session.get(Customer, sh.id).consent == "agreed"
    assert (
        consent.refuse_by_mobile(
            "13900003333", channel="call_centre", evidence="来电", actor=user("callcenter")
        )
        == 1
    )
    db.session.commit()
    assert _events(sh.id)[0].actor_id == user("callcenter").id


def test_refuse_by_mobile_rejects_bad_input(app, user, db_backend):
    with pytest.raises(ValidationError):
        consent.refuse_by_mobile("", channel="sms_reply", evidence="TD")
    with pytest.raises(ValidationError):
        consent.refuse_by_mobile("13900001111", channel="sms_reply", evidence="")
    with pytest.raises(PermissionDenied):
        consent.refuse_by_mobile("13900001111", channel="call_centre", actor=user("bj_staff"))


def test_consent_events_are_immutable_in_the_database(app, user, db_backend):
    c = make_customer(consent="agreed")
    consent.change_consent(c.id, "refused", channel="branch_staff", actor=user("bj_staff"))
    db.session.commit()
    with pytest.raises(DatabaseError):
        db.session.execute(update(ConsentEvent).values(evidence="edited"))
        db.session.flush()
    db.session.rollback()
    with pytest.raises(DatabaseError):
        db.session.execute(delete(ConsentEvent))
        db.session.flush()
    db.session.rollback()
    with pytest.raises(DatabaseError):
        db.session.execute(text("UPDATE consent_events SET new_state = 'agreed'"))
    db.session.rollback()
    (e,) = _events(c.id)
    assert e.evidence == "" and e.new_state == "refused"
