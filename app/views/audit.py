"""The auditors' view of the audit log: filter and export (R-80)."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import Blueprint, Response, current_app, request, stream_with_context
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, select

from app.extensions import db
from app.htmx import render_page_or_partial
from app.security import permission_required
from app.services import audit
from app.services.csv_export import stream_csv
from app.services.errors import ValidationError
from app.timeutil import local_to_utc, to_local

bp = Blueprint("audit", __name__, url_prefix="/audit")


def _filters() -> dict:
    args = request.args
    out = {
        "actor": args.get("actor", "").strip(),
        "action": args.get("action", "").strip(),
        "target_type": args.get("target_type", "").strip(),
        "target_id": args.get("target_id", "").strip(),
        "since": None,
        "until": None,
    }
    for key in ("since", "until"):
        raw = args.get(key, "").strip()
        if raw:
            try:
                day = datetime.strptime(raw, "%Y-%m-%d")
            except ValueError as exc:
                raise ValidationError(_("Dates are written YYYY-MM-DD.")) from exc
            if key == "until":
                day += timedelta(days=1)  # inclusive end day
            out[key] = local_to_utc(day)
    return out


@bp.get("/")
@permission_required("audit.view")
def list_entries():
    filters = _filters()
    page = max(request.args.get("page", 1, type=int), 1)
    size = current_app.config["PAGE_SIZE"]
    query = audit.search(**filters)
    total = db.session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = db.session.execute(query.offset((page - 1) * size).limit(size)).scalars().all()
    return render_page_or_partial(
        "audit/list.html",
        "audit/_results.html",
        rows=rows,
        total=total,
        page=page,
        pages=max((total + size - 1) // size, 1),
        args=request.args,
    )


@bp.get("/export.csv")
@permission_required("audit.view")
def export_csv():
    filters = _filters()
    audit.record(
        "audit.exported", actor=current_user, details={k: str(v) for k, v in filters.items() if v}
    )
    db.session.commit()
    query = audit.search(**filters).execution_options(yield_per=2000)

    def rows():
        for row in db.session.execute(query).scalars():
            yield [
                row.id,
                to_local(row.at).strftime("%Y-%m-%d %H:%M:%S"),
                row.actor_name,
                row.action,
                row.target_type,
                row.target_id,
                row.details,
                row.ip,
                row.prev_hash,
                row.hash,
            ]

    header = [
        "id",
        "time",
        "actor",
        "action",
        "target_type",
        "target_id",
        "details",
        "ip",
        "prev_hash",
        "hash",
    ]
    return Response(
        stream_with_context(stream_csv(header, rows())),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=audit-log.csv"},
    )
