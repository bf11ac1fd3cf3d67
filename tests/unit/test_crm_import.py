"""The CRM import's rules (R-20 to R-23): what a row does to the customers and why."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import func, inspect, select

from app.extensions import db
from app.models import (
    AuditLog,
    ConsentEvent,
    Customer,
    CustomerEvent,
    CustomerTag,
    ImportRowError,
    ImportRun,
    MobileCheck,
)
from app.services import crm_import
from app.services.csv_export import stream_csv
from tests.factories import make_crm_extract, make_crm_row, make_customer, make_user


@pytest.fixture
def extract(tmp_path):
    """Write an extract and import it synchronously; returns the finished run."""
    counter = iter(range(1, 1000))

    def _import(rows, **kw) -> ImportRun:
        path = make_crm_extract(tmp_path / f"customers_{next(counter)}.csv", rows, **kw)
        run = crm_import.create_file_run(path, source="cli")
        db.session.commit()
        return crm_import.run_import(run.id)

    return _import


def customer(crm_id: str) -> Customer:
    db.session.expire_all()
    return db.session.execute(select(Customer).where(Customer.crm_id == crm_id)).scalar_one()


def count(model, *where) -> int:
    return db.session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def errors(run: ImportRun) -> list[tuple[int, str, str]]:
    return [
        (e.line_no, e.field, e.code)
        for e in db.session.execute(crm_import.row_errors_query(run.id)).scalars()
    ]


def snapshot() -> list[tuple]:
    """Everything an import may touch, to prove that nothing changed."""
    db.session.expire_all()
    rows = db.session.execute(select(Customer).order_by(Customer.id)).scalars().all()
    return [
        [
            (
                c.crm_id,
                c.name,
                c.mobile,
                c.mobile_status,
                c.carrier,
                c.branch_id,
                c.manager_id,
                c.opened_on,
                c.risk_level,
                c.tags,
                c.active,
                c.consent,
                c.row_hash,
                c.updated_at,
            )
            for c in rows
        ],
        count(CustomerTag),
        count(CustomerEvent),
        count(MobileCheck),
        count(ConsentEvent),
    ]


def test_new_customers_are_imported_undetermined_with_carrier_and_tags(app, db_backend, extract):
    run = extract(
        [
            make_crm_row("C001", name="张三", mobile="13812345678", tags="稳健;科技"),
            make_crm_row(
                "C002",
                name="李四",
                mobile="+86 186-1234-5678",
                branch_code="SH01",
                manager="sh_staff",
                risk_level="c5",
                opened_on="2020/1/5",
            ),
            make_crm_row(
                "C003",
                name="王五",
                mobile="１３３１２３４５６７８",
                branch_code="sz01",
                manager="sz_staff",
                opened_on="20190101",
                status="Closed",
            ),
        ]
    )
    assert run.status == "succeeded", run.error_message
    assert (
        run.count_new,
        run.count_updated,
        run.count_unchanged,
        run.count_skipped,
        run.count_invalid,
    ) == (3, 0, 0, 0, 0)
    c1, c2, c3 = customer("C001"), customer("C002"), customer("C003")
    assert c1.consent == c2.consent == c3.consent == "undetermined"  # Art 22
    assert (c1.mobile, c1.mobile_tail, c1.carrier, c1.mobile_status) == (
        "13812345678",
        "5678",
        "china_mobile",
        "valid",
    )
    assert (c2.mobile, c2.carrier, c2.risk_level, c2.branch.code, c2.manager.username) == (
        "18612345678",
        "china_unicom",
        "C5",
        "SH01",
        "sh_staff",
    )
    assert str(c2.opened_on) == "2020-01-05"
    assert (c3.mobile, c3.carrier, c3.active, str(c3.opened_on)) == (
        "13312345678",
        "china_telecom",
        False,
        "2019-01-01",
    )
    assert c1.tags == "稳健;科技"
    assert set(
        db.session.execute(
            select(CustomerTag.tag).where(CustomerTag.customer_id == c1.id)
        ).scalars()
    ) == {"稳健", "科技"}
    assert count(ConsentEvent) == 0


def test_the_same_file_twice_changes_nothing(app, db_backend, extract, tmp_path):
    rows = [make_crm_row(f"C{i:03d}", mobile=f"139{i:08d}", tags="基金") for i in range(1, 6)]
    rows.append(make_crm_row("C100", mobile="17012345678"))  # doubtful: verification list
    rows.append(make_crm_row("C101", mobile=""))  # skipped
    rows.append(make_crm_row("C102", branch_code="XX99"))  # invalid
    first = extract(rows)
    assert (first.count_new, first.count_skipped, first.count_invalid, first.count_flagged) == (
        6,
        1,
        1,
        1,
    )
    before = snapshot()
    second = extract(rows)
    assert second.status == "succeeded"
    assert (
        second.count_new,
        second.count_updated,
        second.count_unchanged,
        second.count_skipped,
        second.count_invalid,
    ) == (0, 0, 6, 1, 1)
    assert snapshot() == before
    assert errors(second) == errors(first)


def test_a_changed_mobile_keeps_consent_and_is_recorded(app, db_backend, extract):
    extract([make_crm_row("C001", mobile="13812345678")])
    c = customer("C001")
    c.consent = "agreed"
    db.session.commit()
    run = extract([make_crm_row("C001", mobile="13987654321")])
    assert (run.count_updated, run.count_new) == (1, 0)
    c = customer("C001")
    assert (c.mobile, c.mobile_tail, c.consent) == ("13987654321", "4321", "agreed")  # Art 27(1)
    event = db.session.execute(
        select(CustomerEvent).where(CustomerEvent.customer_id == c.id)
    ).scalar_one()
    assert (event.kind, event.old_value, event.new_value, event.import_run_id) == (
        "mobile_changed",
        "13812345678",
        "13987654321",
        run.id,
    )


def test_closing_and_reopening_a_customer(app, db_backend, extract):
    extract([make_crm_row("C001")])
    run = extract([make_crm_row("C001", status="closed")])
    c = customer("C001")
    assert run.count_updated == 1 and c.active is False
    extract([make_crm_row("C001", status="active")])
    c = customer("C001")
    assert c.active is True
    kinds = (
        db.session.execute(
            select(CustomerEvent.kind)
            .where(CustomerEvent.customer_id == c.id)
            .order_by(CustomerEvent.id)
        )
        .scalars()
        .all()
    )
    assert kinds == ["closed", "reopened"]


def test_row_errors_skip_the_row_and_say_why(app, db_backend, extract, user):
    inactive = make_user(unit_code="BJ01", username="gone_staff")
    inactive.active = False
    db.session.commit()
    run = extract(
        [
            make_crm_row("C001"),  # line 2: fine
            make_crm_row("C002", branch_code="XX01"),  # 3
            make_crm_row("C003", manager="nobody"),  # 4
            make_crm_row("C004", manager="sh_staff"),  # 5: another branch's user
            make_crm_row("C005", manager="gone_staff"),  # 6
            make_crm_row("C006", opened_on="2024-13-01"),  # 7
            make_crm_row("C007", opened_on="2999-01-01"),  # 8
            make_crm_row("C008", risk_level="C6"),  # 9
            make_crm_row("C009", status="frozen"),  # 10
            make_crm_row("C010", name=""),  # 11
            make_crm_row("C 011"),  # 12
            "C012,赵六,13812345678,BJ01",  # 13: too few fields
            make_crm_row("C013", tags="x" * 41),  # 14
            make_crm_row("C014", opened_on="yesterday", risk_level="", status=""),  # 15
        ]
    )
    assert run.status == "succeeded"
    assert (run.count_new, run.count_invalid) == (1, 13)
    assert errors(run) == [
        (3, "branch_code", "unknown_branch"),
        (4, "manager", "unknown_manager"),
        (5, "manager", "manager_not_in_branch"),
        (6, "manager", "inactive_manager"),
        (7, "opened_on", "bad_date"),
        (8, "opened_on", "date_out_of_range"),
        (9, "risk_level", "bad_risk_level"),
        (10, "status", "bad_status"),
        (11, "name", "required"),
        (12, "crm_id", "bad_crm_id"),
        (13, "row", "columns"),
        (14, "tags", "bad_tag"),
        (15, "opened_on", "bad_date"),
        (15, "risk_level", "required"),
        (15, "status", "required"),
    ]
    assert count(Customer) == 1
    bad = db.session.execute(
        select(ImportRowError).where(ImportRowError.run_id == run.id, ImportRowError.line_no == 3)
    ).scalar_one()
    assert (bad.crm_id, bad.value) == ("C002", "XX01")
    assert bad.raw == "C002,张三,13812345678,XX01,bj_staff,2024-03-01,C3,,active"
    audit = db.session.execute(
        select(AuditLog).where(AuditLog.action == "crm_import.succeeded")
    ).scalar_one()
    assert '"invalid": 13' in audit.details and '"new": 1' in audit.details


def test_duplicated_crm_ids_are_errors_on_every_row(app, db_backend, extract):
    make_customer(crm_id="C001", name="原客户", mobile="13700000001")
    before = snapshot()
    run = extract(
        [
            make_crm_row("C001", name="甲", mobile="13812345671"),
            make_crm_row("C002", mobile="13812345672"),
            make_crm_row("C001", name="乙", mobile="13812345673"),
        ]
    )
    assert (run.count_new, run.count_invalid, run.count_unchanged) == (1, 2, 0)
    assert errors(run) == [(2, "crm_id", "duplicate_crm_id"), (4, "crm_id", "duplicate_crm_id")]
    assert snapshot()[0][0] == before[0][0]  # the existing C001 is untouched
    raws = (
        db.session.execute(
            select(ImportRowError.raw)
            .where(ImportRowError.run_id == run.id)
            .order_by(ImportRowError.line_no)
        )
        .scalars()
        .all()
    )
    assert raws[0].startswith("C001,甲,13812345671,BJ01,bj_staff,2024-03-01,C3")


def test_rows_without_mobile_are_skipped_and_leave_customers_alone(app, db_backend, extract):
    make_customer(crm_id="C001", name="原客户", mobile="13700000001")
    before = snapshot()
    run = extract(
        [make_crm_row("C001", name="新名字", mobile=""), make_crm_row("C002", mobile="  ")]
    )
    assert (run.count_skipped, run.count_new, run.count_updated, run.count_invalid) == (2, 0, 0, 0)
    assert snapshot() == before
    assert errors(run) == []


def test_invalid_and_doubtful_mobiles_go_to_the_branch_verification_list(app, db_backend, extract):
    run = extract(
        [
            make_crm_row("C001", mobile="1381234567"),  # 10 digits
            make_crm_row("C002", mobile="17012345678", branch_code="SH01", manager="sh_staff"),
            make_crm_row("C003", mobile="010-62345678"),  # a landline
            make_crm_row("C004", mobile="13900001111"),  # shared ...
            make_crm_row("C005", mobile="13900001111", branch_code="SZ01", manager="sz_staff"),
            make_crm_row("C006", mobile="13800138000"),  # fine
        ]
    )
    assert (run.count_new, run.count_flagged) == (6, 5)
    statuses = {
        c: customer(c).mobile_status for c in ("C001", "C002", "C003", "C004", "C005", "C006")
    }
    assert statuses == {
        "C001": "invalid",
        "C002": "doubtful",
        "C003": "doubtful",
        "C004": "doubtful",
        "C005": "doubtful",
        "C006": "valid",
    }
    assert customer("C003").mobile == "01062345678"
    checks = (
        db.session.execute(select(MobileCheck).order_by(MobileCheck.customer_id)).scalars().all()
    )
    assert [
        (c.customer.crm_id, c.branch_id == c.customer.branch_id, c.reason, c.status) for c in checks
    ] == [
        ("C001", True, "invalid", "open"),
        ("C002", True, "doubtful", "open"),
        ("C003", True, "doubtful", "open"),
        ("C004", True, "doubtful", "open"),
        ("C005", True, "doubtful", "open"),
    ]
    assert "virtual operator" in checks[1].note and "several customers" in checks[3].note
    # The next day's extract: C001 corrected, C005 moved to another number, the rest as before.
    run2 = extract(
        [
            make_crm_row("C001", mobile="13812345670"),
            make_crm_row("C002", mobile="17012345678", branch_code="SH01", manager="sh_staff"),
            make_crm_row("C003", mobile="010-62345678"),
            make_crm_row("C004", mobile="13900001111"),
            make_crm_row("C005", mobile="13900002222", branch_code="SZ01", manager="sz_staff"),
            make_crm_row("C006", mobile="13800138000"),
        ]
    )
    assert (run2.count_updated, run2.count_unchanged) == (3, 3)
    db.session.expire_all()
    open_checks = (
        db.session.execute(select(MobileCheck.customer_id).where(MobileCheck.status == "open"))
        .scalars()
        .all()
    )
    assert sorted(customer_ids_to_crm(open_checks)) == ["C002", "C003"]
    assert customer("C004").mobile_status == "valid"  # no longer shared
    closed = db.session.execute(
        select(MobileCheck).where(MobileCheck.customer_id == customer("C001").id)
    ).scalar_one()
    assert closed.status == "checked" and f"#{run2.id}" in closed.note


def customer_ids_to_crm(ids):
    return db.session.execute(select(Customer.crm_id).where(Customer.id.in_(ids))).scalars().all()


def test_an_open_check_is_not_duplicated_by_the_next_import(app, db_backend, extract):
    rows = [make_crm_row("C001", mobile="1381234567")]
    extract(rows)
    extract(rows)
    extract([make_crm_row("C001", mobile="1381234567", name="新名字")])  # updated, same number
    assert count(MobileCheck) == 1


def test_the_crm_manager_applies_only_when_the_crm_changes_it(app, db_backend, extract, user):
    extract([make_crm_row("C001", manager="bj_staff")])
    c = customer("C001")
    c.manager_id = user("bj_head").id  # a handover in this system
    db.session.commit()
    extract([make_crm_row("C001", manager="bj_staff", risk_level="C4")])  # CRM manager unchanged
    c = customer("C001")
    assert (c.risk_level, c.manager.username) == ("C4", "bj_head")
    other = make_user(unit_code="BJ01", username="bj_new")
    extract([make_crm_row("C001", manager=other.username, risk_level="C4")])  # CRM changed it
    c = customer("C001")
    assert c.manager.username == "bj_new"
    event = db.session.execute(
        select(CustomerEvent).where(CustomerEvent.kind == "manager_changed")
    ).scalar_one()
    assert (event.old_value, event.new_value) == ("bj_head", "bj_new")


def test_a_branch_change_moves_the_customer_and_its_open_check(app, db_backend, extract):
    extract([make_crm_row("C001", mobile="1381234567")])
    extract([make_crm_row("C001", mobile="1381234567", branch_code="SH01", manager="sh_staff")])
    c = customer("C001")
    assert (c.branch.code, c.manager.username) == ("SH01", "sh_staff")
    check = db.session.execute(select(MobileCheck)).scalar_one()
    assert check.branch_id == c.branch_id and check.status == "open"
    kinds = set(db.session.execute(select(CustomerEvent.kind)).scalars())
    assert {"branch_changed", "manager_changed"} <= kinds


def test_tags_follow_the_crm(app, db_backend, extract):
    extract([make_crm_row("C001", tags="基金;债券")])
    extract([make_crm_row("C001", tags="债券；港股通; 债券")])
    c = customer("C001")
    assert c.tags == "债券;港股通"
    assert sorted(
        db.session.execute(select(CustomerTag.tag).where(CustomerTag.customer_id == c.id)).scalars()
    ) == sorted(["债券", "港股通"])


def test_a_failure_midway_leaves_the_previous_data_untouched(app, db_backend, extract, monkeypatch):
    extract([make_crm_row("C001", mobile="13812345678")])
    before = snapshot()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(crm_import, "_open_checks", boom)  # after customers were written
    with pytest.raises(RuntimeError):
        extract(
            [
                make_crm_row("C001", mobile="13987654321"),
                make_crm_row("C002"),
                make_crm_row("C003", branch_code="XX"),
            ]
        )
    db.session.expire_all()
    assert snapshot() == before
    run = db.session.execute(select(ImportRun).order_by(ImportRun.id.desc())).scalars().first()
    assert run.status == "failed" and run.error_code == "crash"
    assert "disk full" in crm_import.describe_failure(run)
    assert count(ImportRowError, ImportRowError.run_id == run.id) == 0
    assert (
        db.session.execute(select(AuditLog.action).order_by(AuditLog.id.desc())).scalars().first()
        == "crm_import.failed"
    )


def test_formula_cells_are_refused_and_cannot_reach_an_exported_csv(app, db_backend, extract):
    run = extract(
        [
            make_crm_row("C001", name='=HYPERLINK("http://evil.example","点我")'),
            make_crm_row("C002", tags="@SUM(A1)"),
            make_crm_row("=1+1"),
            make_crm_row("C004", mobile="=cmd|' /C calc'!A0"),
            make_crm_row("C005", mobile="+8613812345678"),  # a plus sign before digits is a mobile
        ]
    )
    assert run.count_new == 1 and customer("C005").mobile == "13812345678"
    assert [e[1:] for e in errors(run)] == [
        ("name", "formula"),
        ("tags", "formula"),
        ("crm_id", "formula"),
        ("mobile", "formula"),
    ]
    exported = "".join(stream_csv(crm_import.error_csv_header(), crm_import.error_csv_rows(run.id)))
    assert "'=HYPERLINK" in exported and "'@SUM" in exported and "'=1+1" in exported
    for row in csv.reader(io.StringIO(exported.lstrip("\ufeff"))):
        for cell in row:
            assert not cell.startswith(("=", "@", "+", "-")), row


def test_a_bulk_load_rebuilds_the_indexes(app, db_backend, extract):
    app.config["CRM_IMPORT_BULK_ROWS"] = 2
    before = {ix["name"] for ix in inspect(db.engine).get_indexes("customers")}
    run = extract(
        [make_crm_row(f"C{i:03d}", mobile=f"139{i:08d}", tags="基金;债券") for i in range(1, 21)]
    )
    assert run.count_new == 20 and count(CustomerTag) == 40
    db.session.remove()
    after = {ix["name"] for ix in inspect(db.engine).get_indexes("customers")}
    assert after == before and "ix_customers_mobile" in after
    tag_indexes = {ix["name"] for ix in inspect(db.engine).get_indexes("customer_tags")}
    assert "ix_customer_tags_tag" in tag_indexes


def test_the_fast_mobile_check_agrees_with_phonenumbers(app):
    import random

    rnd = random.Random(7)
    for prefix in range(130, 200):
        for _ in range(40):
            number = f"{prefix}{rnd.randrange(10**8):08d}"
            assert (
                crm_import.classify_mobile(number)[1:3] == crm_import._classify_number(number)[:2]
            ), number
