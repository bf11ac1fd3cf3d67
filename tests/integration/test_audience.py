"""The audience preview (R-45, R-46) on a known data set: every exclusion reason, scope,
caps and quiet hours, uploads, and the rows the sending area builds recipients from."""

from datetime import datetime

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Recipient
from app.services import audience, customers, frequency_caps, message_settings
from app.services.errors import NotFound, PermissionDenied, ValidationError
from app.timeutil import local_to_utc
from tests.factories import make_approved_message, make_customer, unit


def _spec(**kw):
    return audience.parse({"kind": "customers", **kw})


@pytest.fixture(params=["kept", "live"])
def caps_from(request, monkeypatch):
    """Run a cap test against the kept list of capped customers (recounted after every
    send, as the recipient build does) and against the live count from the recipients
    (what the preview uses while the kept list is stale): both must answer the same."""
    monkeypatch.setattr(_sent, "keep", request.param == "kept")
    return request.param


@pytest.fixture
def known(app):
    """BJ01: 3 eligible, 1 refused, 2 undetermined, 1 inactive, 2 bad mobiles, 1 duplicate;
    SH01: 2 eligible (out of BJ01's scope)."""
    c = {}
    c["a"] = make_customer(mobile="13900000001", risk_level="C2", tags="基金;债券")
    c["b"] = make_customer(
        mobile="13900000002", risk_level="C3", tags="基金", carrier="china_unicom"
    )
    c["c"] = make_customer(mobile="13900000003", risk_level="C4")
    c["refused"] = make_customer(consent="refused")
    c["und1"] = make_customer(consent="undetermined")
    c["und2"] = make_customer(consent="undetermined", tags="基金")
    c["closed"] = make_customer(active=False)
    c["invalid"] = make_customer(mobile="12345", mobile_status="invalid")
    c["doubtful"] = make_customer(mobile="13900000009", mobile_status="doubtful")
    c["dup"] = make_customer(mobile="13900000001")  # same number as a, higher id
    c["sh1"] = make_customer(branch_code="SH01")
    c["sh2"] = make_customer(branch_code="SH01")
    return c


def test_preview_counts_every_exclusion_reason(known):
    bj = unit("BJ01")
    p = audience.preview(_spec(branches=[bj.id]), unit=bj, category="market")
    assert p.eligible == 3
    assert p.excluded == {
        "inactive": 1,
        "refused": 1,
        "undetermined": 2,
        "invalid_mobile": 2,
        "cap": 0,
        "duplicate": 1,
    }
    assert p.by_carrier == {"china_mobile": 2, "china_unicom": 1}


def test_rows_name_who_receives_and_why_others_do_not(known):
    bj = unit("BJ01")
    rows = db.session.execute(
        audience.rows_select(_spec(branches=[bj.id]), unit=bj, category="notice")
    ).all()
    by_id = {r.customer_id: r for r in rows}
    assert {cid for cid, r in by_id.items() if r.reason is None} == {known[k].id for k in "abc"}
    assert by_id[known["dup"].id].reason == "duplicate"  # the lower id keeps the number
    assert by_id[known["refused"].id].reason == "refused"
    assert by_id[known["closed"].id].reason == "inactive"
    assert by_id[known["doubtful"].id].reason == "invalid_mobile"
    assert all(r.unit_id == bj.id and r.user_id is None for r in rows)


def test_filters_combine_risk_tags_and_serving_staff(known, user):
    bj = unit("BJ01")
    p = audience.preview(
        _spec(branches=[bj.id], risk_levels=["C2", "C3"]), unit=bj, category="market"
    )
    assert p.eligible == 2
    p = audience.preview(_spec(branches=[bj.id], tags=["基金"]), unit=bj, category="market")
    assert p.eligible == 2 and p.excluded["undetermined"] == 1
    p = audience.preview(
        _spec(branches=[bj.id], managers=[user("bj_head").id]), unit=bj, category="market"
    )
    assert p.eligible == 0  # every BJ01 customer is served by bj_staff


def test_branch_scope_hq_reach_and_validation(known, user):
    bj, sh, ops = unit("BJ01"), unit("SH01"), unit("OPS")
    # HQ (Operations) may reach every branch; BJ01 never sees Shanghai's customers.
    assert (
        audience.preview(_spec(branches=[bj.id, sh.id]), unit=ops, category="notice").eligible == 5
    )
    with pytest.raises(PermissionDenied):
        audience.validate(
            _spec(branches=[sh.id]), unit=bj, author=user("bj_staff"), category="notice"
        )
    with pytest.raises(PermissionDenied):
        audience.validate(
            _spec(branches=[bj.id], managers=[user("sh_staff").id]),
            unit=bj,
            author=user("bj_staff"),
            category="notice",
        )
    with pytest.raises(ValidationError):
        audience.validate(
            _spec(branches=[ops.id]), unit=ops, author=user("ops_staff"), category="notice"
        )
    with pytest.raises(ValidationError):
        audience.validate(
            _spec(branches=[bj.id]), unit=bj, author=user("bj_staff"), category="internal"
        )
    # Even a forged spec that names Shanghai counts nothing from there for a branch.
    assert audience.preview(_spec(branches=[sh.id]), unit=bj, category="notice").eligible == 0


def test_parse_refuses_malformed_audiences():
    for raw in [
        "not json",
        "[]",
        {"kind": "everyone"},
        {"branches": ["x"]},
        {"risk_levels": ["C9"]},
        {"upload_id": "abc"},
    ]:
        with pytest.raises(ValidationError):
            audience.parse(raw)
    assert audience.parse({"kind": "customers"}).is_empty
    assert audience.parse({"tags": "基金, 债券，基金"}).tags == ["债券", "基金"]


def _sent(customer, at_local, category="market", n=1):
    """``n`` messages of ``category`` sent to ``customer`` at ``at_local``, each with the one
    recipient row per customer the sending area builds."""
    for _ in range(n):
        # As the sending area does: the message starts sending, then its recipients are built.
        message = make_approved_message(
            category=category, status="sent", send_started_at=local_to_utc(at_local)
        )
        db.session.add(
            Recipient(
                message_id=message.id,
                customer_id=customer.id,
                mobile=customer.mobile,
                status="delivered",
                created_at=local_to_utc(at_local),
            )
        )
    db.session.commit()
    cap = message_settings.cap_for(category)
    if _sent.keep:
        frequency_caps.recount_all()
        assert cap is None or frequency_caps.is_current(category, cap)
    else:
        assert cap is None or not frequency_caps.is_current(category, cap)


_sent.keep = False


def test_frequency_cap_counts_sends_of_the_category(known, caps_from):
    bj = unit("BJ01")
    _sent(known["a"], datetime(2030, 1, 10, 9, 0), n=2)  # 2 today: the daily cap of 2
    _sent(known["b"], datetime(2030, 1, 10, 9, 0), category="notice", n=3)  # other category
    _sent(known["c"], datetime(2030, 1, 6, 9, 0), n=5)  # 5 this week: the weekly cap of 5
    send_at = local_to_utc(datetime(2030, 1, 10, 15, 0))
    p = audience.preview(_spec(branches=[bj.id]), unit=bj, category="market", send_at=send_at)
    assert p.cap == message_settings.Cap(2, 5)
    assert p.excluded["cap"] == 2 and p.excluded["duplicate"] == 0 and p.eligible == 2
    # With a over the cap, the duplicate of a's number now receives.
    rows = db.session.execute(
        audience.rows_select(_spec(branches=[bj.id]), unit=bj, category="market", send_at=send_at)
    ).all()
    assert {r.customer_id for r in rows if r.reason is None} == {known["b"].id, known["dup"].id}
    # Transactional notices are exempt.
    p = audience.preview(_spec(branches=[bj.id]), unit=bj, category="notice", send_at=send_at)
    assert p.cap is None and p.excluded["cap"] == 0 and p.eligible == 3
    # Eight days later the week has passed.
    later = local_to_utc(datetime(2030, 1, 18, 15, 0))
    assert (
        audience.preview(
            _spec(branches=[bj.id]), unit=bj, category="market", send_at=later
        ).excluded["cap"]
        == 0
    )


def test_quiet_hours_hold_the_send_and_move_the_cap_window(known, caps_from):
    bj = unit("BJ01")
    _sent(known["a"], datetime(2030, 1, 10, 9, 0), n=2)
    evening = local_to_utc(datetime(2030, 1, 10, 22, 30))
    p = audience.preview(_spec(branches=[bj.id]), unit=bj, category="market", send_at=evening)
    assert p.held_until == local_to_utc(datetime(2030, 1, 11, 8, 0))
    assert p.excluded["cap"] == 0  # it goes out tomorrow, a new day
    urgent = audience.preview(
        _spec(branches=[bj.id]), unit=bj, category="market", send_at=evening, urgent=True
    )
    assert urgent.held_until is None and urgent.excluded["cap"] == 1
    early = local_to_utc(datetime(2030, 1, 11, 6, 0))
    assert audience.preview(
        _spec(branches=[bj.id]), unit=bj, category="market", send_at=early
    ).held_until == local_to_utc(datetime(2030, 1, 11, 8, 0))
    noon = local_to_utc(datetime(2030, 1, 11, 12, 0))
    assert (
        audience.preview(
            _spec(branches=[bj.id]), unit=bj, category="market", send_at=noon
        ).held_until
        is None
    )


def test_caps_and_quiet_hours_follow_the_settings(known, caps_from, user):
    bj = unit("BJ01")
    message_settings.save(
        {
            "caps": {"market": {"day": 1, "week": 0}},
            "quiet_hours": {"start": "12:00", "end": "13:00"},
        },
        actor=user("admin"),
    )
    db.session.commit()
    _sent(known["a"], datetime(2030, 1, 10, 9, 0))
    at = local_to_utc(datetime(2030, 1, 10, 12, 30))
    p = audience.preview(_spec(branches=[bj.id]), unit=bj, category="market", send_at=at)
    assert p.held_until == local_to_utc(datetime(2030, 1, 10, 13, 0))
    assert p.cap == message_settings.Cap(1, 0) and p.excluded["cap"] == 1
    assert message_settings.cap_for("advisory") is None  # caps not named are exempt


def test_settings_refuse_bad_values_and_change_nothing(app, user):
    before = message_settings.all_settings()
    for bad in [
        {"caps": {"market": {"day": -1}}},
        {"caps": {"nope": {"day": 1}}},
        {"quiet_hours": {"start": "25:00", "end": "08:00"}},
        {"rates": {"default": "abc"}},
        {"rates": {"china_mobile": "0.05"}},
        {"opt_out_line": ""},
        {"link_domains": ["not a domain"]},
        {"caps": {"market": {"day": 3, "week": 2}}},
    ]:
        with pytest.raises(ValidationError):
            message_settings.save(bad, actor=user("admin"))
    assert message_settings.all_settings() == before


def test_staff_audience_for_internal_notices(app, user):
    bj, sh = unit("BJ01"), unit("SH01")
    head, staff = user("bj_head"), user("bj_staff")
    head.mobile, staff.mobile = "13800000001", "13800000001"  # a shared desk phone
    db.session.commit()
    spec = audience.parse({"kind": "staff", "units": [bj.id]})
    p = audience.preview(spec, unit=bj, category="internal")
    assert p.eligible == 1 and p.excluded["duplicate"] == 1
    user("sh_staff").mobile = "13800000003"
    db.session.commit()
    forged = audience.parse({"kind": "staff", "units": [sh.id]})
    with pytest.raises(PermissionDenied):
        audience.validate(forged, unit=bj, author=staff, category="internal")
    assert audience.preview(forged, unit=bj, category="internal").eligible == 0
    assert audience.preview(forged, unit=unit("RES"), category="internal").eligible == 1


def test_upload_reports_bad_lines_and_needs_confirmation(known, user):
    staff = user("bj_staff")
    data = (
        "手机号\n13900000001\n139-0000-0002\n+8613900000003\n12345\n\n13900000001\nabc\n"
        "13811112222\n"
    ).encode()
    upload = audience.create_upload(author=staff, filename="list.csv", data=data, kind="mobile")
    db.session.commit()
    assert (upload.good_count, upload.duplicate_count, upload.bad_count) == (4, 1, 2)
    assert [b["line"] for b in upload.bad_line_list] == [5, 8]
    assert not upload.confirmed
    bj = unit("BJ01")
    spec = _spec(upload_id=upload.id)
    with pytest.raises(ValidationError):
        audience.validate(spec, unit=bj, author=staff, category="market")
    with pytest.raises(PermissionDenied):
        audience.confirm_upload(upload.id, actor=user("bj_head"))
    audience.confirm_upload(upload.id, actor=staff)
    db.session.commit()
    audience.validate(spec, unit=bj, author=staff, category="market")
    p = audience.preview(spec, unit=bj, category="market")
    # 13900000001 is a and dup; 0002 b; 0003 c; 1381111222 matches nobody.
    assert p.eligible == 3 and p.excluded["duplicate"] == 1 and p.not_found == 1
    with pytest.raises(NotFound):
        audience.validate(spec, unit=unit("SH01"), author=user("sh_staff"), category="market")


def test_upload_by_crm_id_and_refusals(known, user):
    staff = user("bj_staff")
    data = f"crm_id,name\n{known['a'].crm_id},x\n{known['sh1'].crm_id}\n".encode("gb18030")
    upload = audience.create_upload(author=staff, filename="ids.csv", data=data, kind="crm_id")
    db.session.commit()
    assert upload.confirmed and upload.good_count == 2
    bj = unit("BJ01")
    p = audience.preview(_spec(upload_id=upload.id), unit=bj, category="market")
    assert p.eligible == 1 and p.not_found == 1  # Shanghai's customer is outside BJ01's scope
    count = db.session.execute(
        select(db.func.count()).select_from(audience.AudienceUpload)
    ).scalar()
    for data, kind in [(b"", "mobile"), (b"abc\nxyz\n", "mobile"), (b"139", "phone")]:
        with pytest.raises(ValidationError):
            audience.create_upload(author=staff, filename="bad.csv", data=data, kind=kind)
        db.session.rollback()
    assert (
        db.session.execute(select(db.func.count()).select_from(audience.AudienceUpload)).scalar()
        == count
    )


def test_message_rows_for_the_sending_area(known, caps_from):
    message = make_approved_message(category="market", unit_code="BJ01", urgent=False)
    _sent(known["a"], datetime(2030, 1, 10, 9, 0), n=2)
    rows = db.session.execute(
        audience.message_rows(message, local_to_utc(datetime(2030, 1, 10, 15, 0)))
    ).all()
    assert {r.customer_id for r in rows if r.reason is None} == {
        known["b"].id,
        known["c"].id,
        known["dup"].id,
    }


@pytest.mark.parametrize("shared_kept", [True, False])
@pytest.mark.parametrize("narrow_up_to", [10, 0])
def test_preview_counts_equal_the_rows_the_send_builds(
    known, caps_from, monkeypatch, narrow_up_to, shared_kept
):
    """The fast count and the per-row select agree, duplicates and caps included, both for
    a branch-sized audience and a company-wide one (shared numbers from the kept list, as
    the import leaves it, or from the whole table; caps kept or counted live)."""
    monkeypatch.setattr(audience, "NARROW_BRANCHES", narrow_up_to)
    bj = unit("BJ01")
    author_unit = unit("OPS")  # an HQ department: scope is every branch
    make_customer(mobile="13900000002", consent="refused")  # shares b's number, excluded anyway
    make_customer(mobile="13900000003", carrier="china_telecom")  # a pair, carriers differing
    if shared_kept:
        assert customers.recount_shared_mobiles() == 3
    assert customers.shared_mobiles_current() is shared_kept
    _sent(known["c"], datetime(2030, 1, 10, 9, 0), n=2)
    send_at = local_to_utc(datetime(2030, 1, 10, 15, 0))
    for category in ("market", "notice"):
        p = audience.preview(
            _spec(branches=[bj.id]), unit=author_unit, category=category, send_at=send_at
        )
        rows = db.session.execute(
            audience.rows_select(
                _spec(branches=[bj.id]), unit=author_unit, category=category, send_at=send_at
            )
        ).all()
        from_rows, carriers = {}, {}
        for r in rows:
            from_rows[r.reason] = from_rows.get(r.reason, 0) + 1
            if r.reason is None:
                carriers[r.carrier] = carriers.get(r.carrier, 0) + 1
        assert p.eligible == from_rows.pop(None)
        assert {k: v for k, v in p.excluded.items() if v} == from_rows
        assert p.by_carrier == carriers
        # c is over the market cap, so the customer sharing its number receives instead.
        assert p.excluded["duplicate"] == (1 if category == "market" else 2)


def test_fewer_recent_messages_than_the_cap_skip_the_count(known):
    """One recipient row per customer per message: with fewer messages than a limit, nobody
    can have reached it, and the count over the recipients is not even made."""
    cap = message_settings.Cap(2, 5)
    send_at = local_to_utc(datetime(2030, 1, 10, 15, 0))
    assert frequency_caps.live_capped(cap, send_at, "market") is None
    _sent(known["a"], datetime(2030, 1, 10, 9, 0))
    assert frequency_caps.live_capped(cap, send_at, "market") is None  # one today, none capped
    _sent(known["b"], datetime(2030, 1, 10, 10, 0))
    capped = frequency_caps.live_capped(cap, send_at, "market")
    assert capped is not None and db.session.execute(select(capped.c.customer_id)).all() == []
    _sent(known["a"], datetime(2030, 1, 10, 11, 0))
    capped = frequency_caps.live_capped(cap, send_at, "market")
    assert db.session.execute(select(capped.c.customer_id)).scalars().all() == [known["a"].id]


def test_shared_mobiles_go_stale_when_a_customer_is_added(known, monkeypatch):
    monkeypatch.setattr(audience, "NARROW_BRANCHES", 0)  # company-wide: the kept list is used
    assert not customers.shared_mobiles_current()  # never counted
    assert customers.recount_shared_mobiles() == 1  # a and dup
    db.session.commit()
    assert customers.shared_mobiles_current()
    make_customer(mobile="13900000002")  # now b's number is shared too, the list is stale
    assert not customers.shared_mobiles_current()
    bj = unit("BJ01")
    p = audience.preview(_spec(branches=[bj.id]), unit=unit("OPS"), category="notice")
    assert p.excluded["duplicate"] == 2
