"""The CRM import pages: upload, live progress (htmx and plain), report, error CSV, access."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Customer, ImportRun
from tests.factories import CRM_HEADER, make_crm_row

GOOD = (
    "\r\n".join(
        [
            CRM_HEADER,
            make_crm_row("C001", name="张三"),
            make_crm_row("C002", name="李四", mobile="1381234567"),
            make_crm_row("C003", name='=HYPERLINK("http://x.example","点")'),
            make_crm_row("C004", mobile=""),
        ]
    )
    + "\r\n"
)


def upload(client, content: bytes | str, filename: str = "customers.csv", **kw):
    data = content.encode("utf-8") if isinstance(content, str) else content
    return client.post(
        "/imports/new",
        {"file": (io.BytesIO(data), filename)},
        content_type="multipart/form-data",
        **kw,
    )


def last_run() -> ImportRun | None:
    db.session.expire_all()
    return db.session.execute(select(ImportRun).order_by(ImportRun.id.desc())).scalars().first()


def test_upload_queues_a_run_whose_page_polls_until_final(client, login_as, run_jobs):
    login_as("admin")
    page = client.get("/imports/new")
    assert page.status_code == 200 and "导入CRM数据" in page.get_data(as_text=True)
    response = upload(client, GOOD)
    assert response.status_code == 302
    run = last_run()
    assert (run.source, run.status, run.started_by.username, run.filename) == (
        "upload",
        "queued",
        "admin",
        "customers.csv",
    )
    assert response.headers["Location"].endswith(f"/imports/{run.id}")

    page = client.get(f"/imports/{run.id}").get_data(as_text=True)
    assert 'hx-trigger="every 1s"' in page and f"/imports/{run.id}/progress" in page
    partial = client.get(f"/imports/{run.id}/progress", htmx=True)
    body = partial.get_data(as_text=True)
    assert partial.status_code == 200 and "<html" not in body
    assert 'hx-trigger="every 1s"' in body and "<progress" in body
    assert "HX-Request" in partial.headers["Vary"]

    assert run_jobs(["import"]) == 0
    partial = client.get(f"/imports/{run.id}/progress", htmx=True)
    body = partial.get_data(as_text=True)
    assert "<html" not in body and "hx-trigger" not in body  # final: polling stops
    assert 'id="import-status"' in body and "成功" in body
    assert "新增" in body and "<strong>2</strong>" in body  # C001 and C002 (doubtful) new
    assert "跳过" in body and "公式" in body  # the formula row's error, in Chinese
    full = client.get(f"/imports/{run.id}/progress")
    text = full.get_data(as_text=True)
    assert full.status_code == 200 and "<html" in text and 'id="import-status"' in text
    assert "HX-Request" in full.headers["Vary"]
    assert db.session.execute(select(func.count(Customer.id))).scalar_one() == 2


def test_the_error_rows_download_safely_as_csv(client, login_as, run_jobs):
    login_as("admin")
    upload(client, GOOD)
    run_jobs(["import"])
    run = last_run()
    response = client.get(f"/imports/{run.id}/errors.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert f"crm-import-{run.id}-errors.csv" in response.headers["Content-Disposition"]
    text = response.get_data(as_text=True).lstrip("\ufeff")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["行号", "CRM 客户号", "字段", "问题", "值", "原始行"]
    assert len(rows) == 2
    line, crm_id, field, problem, value, raw = rows[1]
    assert (line, crm_id, field) == ("4", "C003", "姓名")
    assert value.startswith("'=HYPERLINK")
    assert raw.startswith("C003,")
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@")), cell


def test_a_wrong_file_is_refused_on_the_upload_page(client, login_as):
    login_as("admin")
    response = upload(client, "id,name\r\n1,张三\r\n")
    body = response.get_data(as_text=True)
    assert response.status_code == 422 and "upload-error" in body
    assert "crm_id" in body  # names the header expected
    assert upload(client, b"PK\x03\x04zzzz", "客户.xlsx").status_code == 422
    assert upload(client, b"", "empty.csv").status_code == 422
    response = client.post("/imports/new", {}, content_type="multipart/form-data")
    assert response.status_code == 422
    assert last_run() is None


def test_an_oversized_upload_gets_a_clear_413(app, client, login_as):
    login_as("admin")
    app.config["MAX_CONTENT_LENGTH"] = 2000
    app.config["CRM_IMPORT_MAX_BYTES"] = 1000
    response = upload(client, CRM_HEADER + "\r\n" + "x" * 5000)
    body = response.get_data(as_text=True)
    assert response.status_code == 413
    assert "flask crm import" in body and "<html" in body
    assert last_run() is None


def test_a_file_over_the_import_limit_within_the_request_limit_is_refused(app, client, login_as):
    login_as("admin")
    app.config["CRM_IMPORT_MAX_BYTES"] = 200
    response = upload(client, GOOD * 3)
    assert response.status_code == 422 and "MB" in response.get_data(as_text=True)
    assert last_run() is None


def test_the_list_shows_runs_and_the_nav_entry(client, login_as, run_jobs):
    login_as("admin")
    upload(client, GOOD)
    run_jobs(["import"])
    page = client.get("/imports/").get_data(as_text=True)
    assert "CRM导入" in page and "customers.csv" in page and "成功" in page
    assert 'href="/imports/"' in page  # the navigation entry


@pytest.mark.parametrize("username", ["bj_staff", "sh_head", "auditor", "callcenter", "finance"])
def test_only_importers_may_use_the_import_pages(client, login_as, username):
    login_as(username)
    assert 'href="/imports/"' not in client.get("/dashboard").get_data(as_text=True)
    for url in (
        "/imports/",
        "/imports/new",
        "/imports/1",
        "/imports/1/progress",
        "/imports/1/errors.csv",
    ):
        assert client.get(url).status_code == 403, url
        assert client.get(url, htmx=True).status_code == 403, url
    assert upload(client, GOOD).status_code == 403
    assert client.post("/imports/sql", {}).status_code == 403
    assert last_run() is None


def test_a_missing_run_is_404(client, login_as):
    login_as("admin")
    assert client.get("/imports/999").status_code == 404
    assert client.get("/imports/999/progress", htmx=True).status_code == 404


def test_import_from_the_crm_database_button(app, client, login_as, run_jobs, tmp_path):
    from sqlalchemy import create_engine, text

    login_as("admin")
    assert "从CRM数据库导入" not in client.get("/imports/new").get_data(as_text=True)
    assert client.post("/imports/sql", {}).status_code == 422  # not configured
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE crm_customers AS SELECT 'Q001' AS crm_id, '刘洋' AS name, "
                "'13812345678' AS mobile, 'BJ01' AS branch_code, 'bj_staff' AS manager, "
                "'2022-02-02' AS opened_on, 'C3' AS risk_level, '' AS tags, "
                "'active' AS status"
            )
        )
    engine.dispose()
    app.config["CRM_DATABASE_URL"] = url
    assert "从CRM数据库导入" in client.get("/imports/new").get_data(as_text=True)
    response = client.post("/imports/sql", {})
    assert response.status_code == 302
    run_jobs(["import"])
    assert (last_run().source, last_run().status, last_run().count_new) == ("sql", "succeeded", 1)
