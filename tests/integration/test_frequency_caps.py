"""The frequency cap's kept list of capped customers (R-46): it answers as the live count
from the recipients does, the recipient build and carriers' failure reports keep it, and a
change of the settings makes it stale until the scheduler recounts it."""

import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AuditLog, CappedCustomer, CapState, Recipient
from app.services import audience, delivery_reports, frequency_caps, message_settings, sending
from app.timeutil import local_to_utc, local_today
from tests.factories import make_approved_message, make_customer, unit


def _sends(customer, days, category="market", status="delivered", hour=9):
    """One message of ``category`` per entry of ``days`` (local dates) to ``customer``."""
    for day in days:
        at = local_to_utc(datetime(day.year, day.month, day.day, hour, 0))
        message = make_approved_message(category=category, status="sent", send_started_at=at)
        db.session.add(
            Recipient(
                message_id=message.id,
                customer_id=customer.id,
                mobile=customer.mobile,
                status=status,
                created_at=at,
            )
        )
    db.session.commit()


def _capped_ids(subquery) -> set[int]:
    if subquery is None:
        return set()
    return set(db.session.execute(select(subquery.c.customer_id)).scalars())


def test_kept_list_answers_as_the_live_count_day_by_day(app):
    """Histories around both limits (2 a day, 5 in 7 days), failed and suppressed sends,
    another category: for a send on each of the next nine days, both agree."""
    today = local_today()
    d = [datetime(today.year, today.month, today.day) - timedelta(days=9 - i) for i in range(10)]
    two_today = make_customer()
    _sends(two_today, [d[9], d[9]])
    five_in_week = make_customer()
    _sends(five_in_week, [d[3], d[5], d[6], d[8], d[9]])
    four_and_failed = make_customer()
    _sends(four_and_failed, [d[4], d[6], d[7], d[9]])
    _sends(four_and_failed, [d[8]], status="failed")
    _sends(four_and_failed, [d[9]], status="suppressed")
    five_spread = make_customer()  # five sends over nine days: never five in one week
    _sends(five_spread, [d[1], d[3], d[5], d[7], d[9]])
    other_category = make_customer()
    _sends(other_category, [d[9], d[9], d[9]], category="notice")
    two_yesterday_three_more = make_customer()
    _sends(two_yesterday_three_more, [d[8], d[8], d[7], d[6], d[4]])

    cap = message_settings.cap_for("market")
    assert cap == message_settings.Cap(2, 5)
    # five_spread was capped through two days ago: no longer kept.
    assert frequency_caps.recount_all() == {"market": 3, "advisory": 0, "product": 0}
    assert frequency_caps.is_current("market", cap)
    expected = {
        9: {two_today.id, five_in_week.id, two_yesterday_three_more.id},
        # five_in_week's 5th newest send is d[3]: capped through d[9]; the other's is
        # d[4]: through d[10].
        10: {two_yesterday_three_more.id},
        11: set(),
    }
    for offset in range(9, 18):
        send_at = local_to_utc(d[0] + timedelta(days=offset, hours=15))
        kept = _capped_ids(frequency_caps.capped(cap, send_at, "market"))
        live = _capped_ids(frequency_caps.live_capped(cap, send_at, "market"))
        assert kept == live, offset
        if offset in expected:
            assert kept == expected[offset], offset
    through = dict(
        db.session.execute(select(CappedCustomer.customer_id, CappedCustomer.capped_through)).all()
    )
    assert through[five_in_week.id] == d[9].date()
    assert through[two_yesterday_three_more.id] == (d[4] + timedelta(days=6)).date()
    # Recounting is idempotent and writes one audit row per category recounted.
    before = db.session.execute(select(db.func.count()).select_from(CappedCustomer)).scalar()
    frequency_caps.recount_all()
    after = db.session.execute(select(db.func.count()).select_from(CappedCustomer)).scalar()
    assert before == after == 3
    audits = db.session.execute(
        select(AuditLog).where(AuditLog.action == "frequency_caps.recounted")
    ).scalars()
    assert {json.loads(a.details)["category"] for a in audits} >= {"market", "advisory", "product"}


def test_builds_keep_the_list_and_failure_reports_free_the_slot(app, run_jobs):
    frequency_caps.recount_all()  # the scheduler's first tick after the upgrade
    a, b = make_customer(), make_customer()
    for _ in range(2):
        make_approved_message(category="market")  # urgent: no quiet hours
        assert len(sending.dispatch_due()) == 1
        run_jobs()
    # Two market messages today: both customers are at the daily cap, known without any
    # recount but the builds' own.
    kept = set(
        db.session.execute(
            select(CappedCustomer.customer_id).where(CappedCustomer.category == "market")
        ).scalars()
    )
    assert kept == {a.id, b.id}
    bj = unit("BJ01")
    spec = audience.parse({"kind": "customers", "branches": [bj.id]})
    preview = audience.preview(spec, unit=bj, category="market", urgent=True)
    assert preview.eligible == 0 and preview.excluded["cap"] == 2
    built = (
        db.session.execute(
            select(AuditLog)
            .where(AuditLog.action == "message.recipients_built")
            .order_by(AuditLog.id.desc())
        )
        .scalars()
        .first()
    )
    assert json.loads(built.details)["capped"] == 2

    # One of b's messages is still waiting for its report (submitted), which then says it
    # failed: b has only one send today.
    failed = (
        db.session.execute(
            select(Recipient).where(Recipient.customer_id == b.id).order_by(Recipient.id)
        )
        .scalars()
        .first()
    )
    failed.status = "submitted"
    db.session.commit()
    failed = failed.id
    result = delivery_reports.apply_report(
        gateway="kannel", recipient_id=failed, outcome="failed", code="DELIVRD?"
    )
    db.session.commit()
    assert result.changed
    preview = audience.preview(spec, unit=bj, category="market", urgent=True)
    assert preview.eligible == 1 and preview.excluded["cap"] == 1

    # A third message goes to b only; a is suppressed for the cap.
    message = make_approved_message(category="market")
    sending.dispatch_due()
    run_jobs()
    rows = dict(
        db.session.execute(
            select(Recipient.customer_id, Recipient.reason).where(
                Recipient.message_id == message.id
            )
        ).all()
    )
    assert rows == {a.id: "cap", b.id: ""}


def test_changed_settings_count_live_until_the_scheduler_recounts(app, user):
    customer = make_customer()
    today = datetime.combine(local_today(), datetime.min.time())
    _sends(customer, [today, today - timedelta(days=1)], hour=1)
    frequency_caps.recount_all()
    bj = unit("BJ01")
    spec = audience.parse({"kind": "customers", "branches": [bj.id]})
    assert audience.preview(spec, unit=bj, category="market", urgent=True).excluded["cap"] == 0

    caps = message_settings.get("caps")
    message_settings.save({"caps": {**caps, "market": {"day": 1, "week": 2}}}, actor=user("admin"))
    db.session.commit()
    cap = message_settings.cap_for("market")
    assert not frequency_caps.is_current("market", cap)
    # Stale: the preview counts live, and is right at once.
    assert audience.preview(spec, unit=bj, category="market", urgent=True).excluded["cap"] == 1
    assert frequency_caps.recount_all(only_stale=True)["market"] == 1
    assert frequency_caps.is_current("market", cap)
    assert frequency_caps.recount_all(only_stale=True) == {}  # nothing left to do
    assert audience.preview(spec, unit=bj, category="market", urgent=True).excluded["cap"] == 1
    # Exempting the category empties its list.
    message_settings.save({"caps": {**caps, "market": {"day": 0, "week": 0}}}, actor=user("admin"))
    db.session.commit()
    assert frequency_caps.recount_all(only_stale=True) == {"market": 0}
    assert db.session.execute(select(CappedCustomer)).first() is None


def test_builds_of_a_category_take_turns_on_its_lock(app, db_backend):
    """PostgreSQL: a build holds its category's row lock until it commits; a failure report
    does not wait for it (it skips the recount), and other categories are not held."""
    if db_backend != "postgresql":
        pytest.skip("SQLite serialises writers by itself")

    def free(category: str) -> bool:
        with db.engine.connect() as other:
            row = other.execute(
                select(CapState.category)
                .where(CapState.category == category)
                .with_for_update(skip_locked=True)
            ).first()
            other.rollback()
        return row is not None

    frequency_caps.recount_all()
    assert frequency_caps.lock("market")
    assert not free("market") and free("advisory")
    db.session.rollback()
    assert free("market")
