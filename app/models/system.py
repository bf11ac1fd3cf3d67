"""Bookkeeping for the scheduler."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db


class ScheduledRun(db.Model):
    """A daily task that has run for a given day (so a restart never runs it twice)."""

    __tablename__ = "scheduled_runs"

    task: Mapped[str] = mapped_column(String(60), primary_key=True)
    run_date: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD, Asia/Shanghai
    started_at: Mapped[datetime] = mapped_column(DateTime)
