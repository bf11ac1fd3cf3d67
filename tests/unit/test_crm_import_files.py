"""What the CRM import accepts as an extract: encodings, bad files, the SQL source."""

from __future__ import annotations

import codecs
import io
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from app.extensions import db
from app.models import AuditLog, Customer, ImportRun
from app.services import crm_import
from app.services.errors import ValidationError
from tests.factories import CRM_HEADER, make_crm_extract, make_crm_row, make_customer


def run_file(path, source="cli") -> ImportRun:
    run = crm_import.create_file_run(path, source=source)
    db.session.commit()
    return crm_import.run_import(run.id)


def customers() -> dict[str, str]:
    db.session.expire_all()
    return dict(db.session.execute(select(Customer.crm_id, Customer.name)).all())


ROWS = [
    make_crm_row("C001", name="张三丰", tags="稳健;科技"),
    make_crm_row(
        "C002", name="欧阳娜娜", mobile="13912345678", branch_code="SH01", manager="sh_staff"
    ),
]


@pytest.mark.parametrize(
    "encoding,expected",
    [
        ("utf-8", "utf-8"),
        ("utf-8-sig", "utf-8-sig"),
        ("gb18030", "gb18030"),
    ],
)
def test_utf8_with_or_without_bom_and_gb18030_are_detected(
    app, db_backend, tmp_path, encoding, expected
):
    path = make_crm_extract(tmp_path / "customers_20261124.csv", ROWS, encoding=encoding)
    if encoding == "gb18030":
        assert path.read_bytes().decode("gb18030") and not _is_utf8(path.read_bytes())
    run = run_file(path)
    assert run.status == "succeeded", run.error_message
    assert run.encoding == expected
    assert customers() == {"C001": "张三丰", "C002": "欧阳娜娜"}
    c = db.session.execute(select(Customer).where(Customer.crm_id == "C001")).scalar_one()
    assert c.tags == "稳健;科技"


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_header_columns_may_come_in_any_order(app, db_backend, tmp_path):
    header = "name,crm_id,status,mobile,branch_code,manager,opened_on,risk_level,tags"
    path = make_crm_extract(
        tmp_path / "x.csv",
        ["李雷,C010,active,13812345678,BJ01,bj_staff,2023-01-02,C2,基金"],
        header=header,
    )
    run = run_file(path)
    assert run.count_new == 1 and customers() == {"C010": "李雷"}


def _bad(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


BAD_FILES = [
    ("empty", b""),
    ("no_rows", (CRM_HEADER + "\r\n").encode()),
    ("header", b"id,name,phone\r\n1,a,13812345678\r\n"),
    ("header", ("\ufeff" + CRM_HEADER.replace("risk_level", "risk")).encode()),
    ("binary", b"crm_id,name\x00\x01\x02" * 50),
    ("spreadsheet", b"PK\x03\x04" + b"\x00" * 200),
    ("utf16", (CRM_HEADER + "\r\n").encode("utf-16")),
    ("encoding", (CRM_HEADER + "\r\nC1,").encode() + b"\x81\x30\xff\xfe\x80" * 20),
    ("not_csv", (CRM_HEADER + '\r\nC1,"' + "x" * 200_000 + '"\r\n').encode()),
]


@pytest.mark.parametrize(
    "code,data", BAD_FILES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(BAD_FILES)]
)
def test_bad_files_fail_clearly_and_change_nothing(app, db_backend, tmp_path, code, data):
    make_customer(crm_id="C001", name="原客户")
    before = customers()
    run = run_file(_bad(tmp_path, "customers_20261124.csv", data))
    assert run.status == "failed"
    assert run.error_code == code
    assert crm_import.describe_failure(run)
    assert customers() == before
    assert run.count_new == run.count_invalid == 0
    audit = db.session.execute(select(AuditLog).order_by(AuditLog.id.desc())).scalars().first()
    assert audit.action == "crm_import.failed" and code in audit.details


def test_a_missing_file_fails(app, db_backend, tmp_path):
    run = run_file(tmp_path / "nowhere.csv")
    assert (run.status, run.error_code) == ("failed", "missing")


def test_a_2gb_file_is_refused_before_it_is_read(app, db_backend, tmp_path, monkeypatch):
    huge = tmp_path / "customers_20261124.csv"
    with huge.open("wb") as fh:  # sparse: takes no disk space
        fh.truncate(2 * 1024**3)
    opened = []
    real_open = Path.open

    def spy(self, *args, **kwargs):
        if self == huge:
            opened.append(self)
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", spy)
    started = time.monotonic()
    run = run_file(huge)
    assert (run.status, run.error_code) == ("failed", "too_large")
    assert opened == [] and time.monotonic() - started < 5
    assert "2048" in crm_import.describe_failure(run)


def test_an_upload_is_checked_before_a_run_exists(app, db_backend, tmp_path, user):
    with pytest.raises(ValidationError) as exc:
        crm_import.accept_upload(io.BytesIO(b"a,b\r\n1,2\r\n"), "x.csv", user=user("admin"))
    assert "crm_id" in str(exc.value.message)
    with pytest.raises(ValidationError):
        crm_import.accept_upload(io.BytesIO(b"PK\x03\x04"), "客户.xlsx", user=user("admin"))
    assert db.session.execute(select(func.count(ImportRun.id))).scalar_one() == 0
    assert list(crm_import.upload_dir().glob("*")) == []


def test_the_newest_extract_is_found_by_the_date_in_its_name(app, tmp_path):
    folder = tmp_path / "drop"
    assert crm_import.newest_extract(folder) is None
    for name in (
        "customers_20261122.csv",
        "customers_20261124.csv",
        "customers_20261123.csv",
        "customers_20261399.csv",
        "customers_latest.csv",
        "other_20261130.csv",
    ):
        make_crm_extract(folder / name, [])
    assert crm_import.newest_extract(folder).name == "customers_20261124.csv"


@pytest.fixture
def crm_database(tmp_path):
    """A CRM database of its own (SQLite), with the extract's columns under other types."""
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE crm_customers (crm_id TEXT, name TEXT, mobile TEXT, "
                "branch_code TEXT, manager TEXT, opened_on DATE, risk_level TEXT, "
                "tags TEXT, status TEXT)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO crm_customers VALUES "
                "('S001', '韩梅梅', '13812345678', 'BJ01', 'bj_staff', '2021-05-06', "
                "'C2', '基金', 'active'), "
                "('S002', '李华', NULL, 'SH01', 'sh_staff', '2021-05-06', 'C2', NULL, "
                "'active'), "
                "('S003', '王芳', '13912345678', 'XX', 'sh_staff', '2021-05-06', 'C2', "
                "NULL, 'active')"
            )
        )
    engine.dispose()
    return url


def test_the_sql_source_feeds_the_same_pipeline(app, db_backend, crm_database):
    app.config["CRM_DATABASE_URL"] = crm_database
    run = crm_import.create_sql_run()
    db.session.commit()
    run = crm_import.run_import(run.id)
    assert run.status == "succeeded", run.error_message
    assert (run.source, run.count_new, run.count_skipped, run.count_invalid) == ("sql", 1, 1, 1)
    assert customers() == {"S001": "韩梅梅"}
    again = crm_import.run_import(crm_import.create_sql_run().id)
    assert again.count_unchanged == 1 and again.count_new == 0


def test_the_sql_source_needs_the_extract_columns(app, db_backend, crm_database):
    app.config["CRM_DATABASE_URL"] = crm_database
    app.config["CRM_SQL_QUERY"] = "SELECT crm_id, name FROM crm_customers"
    run = crm_import.run_import(crm_import.create_sql_run().id)
    assert (run.status, run.error_code) == ("failed", "sql_columns")
    app.config["CRM_SQL_QUERY"] = "SELECT * FROM no_such_table"
    run = crm_import.run_import(crm_import.create_sql_run().id)
    assert (run.status, run.error_code) == ("failed", "sql_error")
    assert "no_such_table" in crm_import.describe_failure(run)


def test_the_sql_source_must_be_configured(app):
    app.config["CRM_DATABASE_URL"] = ""
    with pytest.raises(ValidationError):
        crm_import.create_sql_run()


def test_gb18030_detection_does_not_take_utf8_for_it(app):
    text_ = "欧阳娜娜,𠀀"  # a CJK Extension B character: four bytes in both encodings
    assert codecs.decode(text_.encode("gb18030"), "gb18030") == text_
    assert not _is_utf8(text_.encode("gb18030"))


def test_a_bad_line_deep_in_the_file_stops_the_stream_cleanly(app, db_backend, tmp_path):
    """A CSV error after several staged batches: the running COPY is cancelled, nothing is
    kept, and the same connection imports the next file normally."""
    rows = [make_crm_row(f"C{i:05d}", mobile=f"139{i:08d}") for i in range(1, 12_001)]
    bad = make_crm_extract(tmp_path / "bad.csv", rows + ['C99999,"' + "x" * 200_000 + '"'])
    run = run_file(bad)
    assert (run.status, run.error_code, run.error_param_dict["line"]) == (
        "failed",
        "not_csv",
        "12002",
    )
    assert customers() == {}
    good = run_file(make_crm_extract(tmp_path / "good.csv", rows[:10]))
    assert good.status == "succeeded" and len(customers()) == 10


def test_row_errors_are_kept_when_the_stream_pauses_for_them(
    app, db_backend, tmp_path, monkeypatch
):
    monkeypatch.setattr(crm_import, "BATCH_ROWS", 2)
    monkeypatch.setattr(crm_import.Staging, "ERROR_BUFFER", 3)
    rows = []
    for i in range(1, 21):
        rows.append(
            make_crm_row(f"C{i:03d}", mobile=f"139{i:08d}", risk_level="C9" if i % 3 == 0 else "C2")
        )
    run = run_file(make_crm_extract(tmp_path / "x.csv", rows))
    assert (run.count_new, run.count_invalid) == (14, 6)
    assert crm_import.error_count(run.id) == 6
