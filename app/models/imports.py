"""CRM import runs and the rows they could not import (R-20 to R-22)."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db

IMPORT_SOURCES = ("upload", "cli", "schedule", "sql")
IMPORT_STATUSES = ("queued", "running", "succeeded", "failed")
FINAL_STATUSES = ("succeeded", "failed")


class ImportRun(db.Model):
    """One import of a CRM extract, from queueing to its report.

    ``status`` moves queued → running → succeeded | failed. The counts partition the
    data rows of the extract: every row is exactly one of new, updated, unchanged,
    skipped (no mobile, Art 20) or invalid (a row error); ``count_flagged`` counts the
    imported rows whose mobile went to the verification list (R-23). A failed run
    changed no customer (the import is one transaction); ``error_code`` and
    ``error_params`` say why, ``error_message`` is the same in English for logs.
    """

    __tablename__ = "import_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(10))  # upload | cli | schedule | sql
    filename: Mapped[str] = mapped_column(String(255), default="")
    # Where the worker reads the file; uploads are deleted once their run ends.
    path: Mapped[str] = mapped_column(String(1000), default="")
    file_sha256: Mapped[str] = mapped_column(String(64), default="")
    file_size: Mapped[int] = mapped_column(BigInteger, default=0)
    encoding: Mapped[str] = mapped_column(String(20), default="")
    status: Mapped[str] = mapped_column(String(10), default="queued")
    job_id: Mapped[str] = mapped_column(String(64), default="")
    started_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    rows_processed: Mapped[int] = mapped_column(Integer, default=0)
    count_new: Mapped[int] = mapped_column(Integer, default=0)
    count_updated: Mapped[int] = mapped_column(Integer, default=0)
    count_unchanged: Mapped[int] = mapped_column(Integer, default=0)
    count_skipped: Mapped[int] = mapped_column(Integer, default=0)
    count_invalid: Mapped[int] = mapped_column(Integer, default=0)
    count_flagged: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str] = mapped_column(String(30), default="")
    error_params: Mapped[str] = mapped_column(Text, default="")  # JSON object
    error_message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)

    started_by = relationship("User")

    __table_args__ = (
        Index("ix_import_runs_status", "status"),
        Index("ix_import_runs_created_at", "created_at"),
        Index("ix_import_runs_filename", "filename"),
        Index("ix_import_runs_file_sha256", "file_sha256"),
    )

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def total_rows(self) -> int:
        return (
            self.count_new
            + self.count_updated
            + self.count_unchanged
            + self.count_skipped
            + self.count_invalid
        )

    @property
    def error_param_dict(self) -> dict:
        return json.loads(self.error_params) if self.error_params else {}

    def __repr__(self) -> str:
        return f"<ImportRun {self.id} {self.status}>"


class ImportRowError(db.Model):
    """One problem with one row of an extract; the row was not imported.

    ``code`` names the rule (see ``app.services.crm_import.ROW_ERRORS``), ``value`` is the
    offending cell and ``raw`` the row as read, so the CRM team can correct it.
    """

    __tablename__ = "import_row_errors"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("import_runs.id", ondelete="CASCADE"))
    line_no: Mapped[int] = mapped_column(Integer)
    crm_id: Mapped[str] = mapped_column(String(64), default="")
    field: Mapped[str] = mapped_column(String(20), default="")
    code: Mapped[str] = mapped_column(String(30))
    value: Mapped[str] = mapped_column(String(200), default="")
    message: Mapped[str] = mapped_column(String(400), default="")
    raw: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_import_row_errors_run_line", "run_id", "line_no"),)
