"""CRM import pages (R-20 to R-22): upload, the list of runs, a run's live progress and
report, its error rows as CSV.

The import covers every branch, so besides ``customer.import`` these pages need a user
who sees all units (R-03); the Market admin role has both.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import func, select

from app.extensions import db
from app.htmx import render_page_or_partial
from app.jobs import imports as import_jobs
from app.models import ImportRun
from app.security import permission_required
from app.services import crm_import, scope
from app.services.csv_export import stream_csv
from app.services.errors import NotFound, PermissionDenied, ValidationError

bp = Blueprint("imports", __name__, url_prefix="/imports")

SOURCE_LABELS = {
    "upload": _l("Upload"),
    "cli": _l("Command line"),
    "schedule": _l("Daily"),
    "sql": _l("CRM database"),
}
STATUS_LABELS = {
    "queued": _l("Queued"),
    "running": _l("Running"),
    "succeeded": _l("Succeeded"),
    "failed": _l("Failed"),
}
PHASE_LABELS = {
    "queued": _l("Waiting for a worker"),
    "running": _l("Starting"),
    "reading": _l("Reading and checking rows"),
    "checking": _l("Checking duplicates"),
    "comparing": _l("Comparing with the customers"),
    "applying": _l("Writing customers"),
    "finishing": _l("Finishing"),
    "succeeded": _l("Done"),
    "failed": _l("Failed"),
}
ERROR_PREVIEW = 100


def _require_all_units() -> None:
    if not scope.sees_all_units(current_user):
        raise PermissionDenied(
            _("The CRM import covers every branch; it needs a user who sees all units.")
        )


def _labels() -> dict:
    return {
        "source_labels": SOURCE_LABELS,
        "status_labels": STATUS_LABELS,
        "phase_labels": PHASE_LABELS,
    }


def _get_run(run_id: int) -> ImportRun:
    run = db.session.get(ImportRun, run_id)
    if run is None:
        raise NotFound(_("There is no such import."))
    return run


def _limit_mb() -> str:
    return f"{current_app.config['CRM_IMPORT_MAX_BYTES'] / 1024 / 1024:.0f}"


def _upload_page(error: str | None = None, status: int = 200):
    return render_template(
        "imports/new.html",
        error=error,
        limit_mb=_limit_mb(),
        sql_configured=bool(current_app.config.get("CRM_DATABASE_URL")),
        import_dir=current_app.config["CRM_IMPORT_DIR"],
        import_time=current_app.config["CRM_IMPORT_TIME"],
    ), status


@bp.errorhandler(413)
def upload_too_large(exc):
    """MAX_CONTENT_LENGTH stops an oversized upload before it is read; say why here."""
    if not current_user.is_authenticated or not current_user.can("customer.import"):
        return render_template(
            "errors/error.html",
            status=413,
            title=_("Too large"),
            message=_("The upload is larger than allowed."),
        ), 413
    return _upload_page(
        _(
            "The file is larger than the %(max)s MB the CRM import accepts. "
            "Import it from the command line (flask crm import) or ask for a "
            "smaller extract.",
            max=_limit_mb(),
        ),
        413,
    )


@bp.get("/")
@permission_required("customer.import")
def list_runs():
    _require_all_units()
    page = max(request.args.get("page", 1, type=int), 1)
    size = current_app.config["PAGE_SIZE"]
    total = db.session.execute(select(func.count(ImportRun.id))).scalar_one()
    runs = (
        db.session.execute(
            select(ImportRun).order_by(ImportRun.id.desc()).offset((page - 1) * size).limit(size)
        )
        .scalars()
        .all()
    )
    runs = [import_jobs.refresh(run) for run in runs]
    return render_template(
        "imports/list.html",
        runs=runs,
        page=page,
        pages=max((total + size - 1) // size, 1),
        total=total,
        **_labels(),
    )


@bp.get("/new")
@permission_required("customer.import")
def new_import():
    _require_all_units()
    return _upload_page()


@bp.post("/new")
@permission_required("customer.import")
def upload():
    _require_all_units()
    storage = request.files.get("file")
    if storage is None or not storage.filename:
        return _upload_page(_("Choose the CSV file to import."), 422)
    try:
        run = crm_import.accept_upload(storage.stream, storage.filename, user=current_user)
        db.session.commit()
    except ValidationError as exc:
        db.session.rollback()
        return _upload_page(str(exc.message), 422)
    import_jobs.launch(run.id)
    flash(_("The file is queued for import; this page shows its progress."), "success")
    return redirect(url_for("imports.view_run", run_id=run.id))


@bp.post("/sql")
@permission_required("customer.import")
def import_sql():
    _require_all_units()
    try:
        run = crm_import.create_sql_run(user=current_user)
        db.session.commit()
    except ValidationError as exc:
        db.session.rollback()
        return _upload_page(str(exc.message), 422)
    import_jobs.launch(run.id)
    flash(_("The import from the CRM database is queued."), "success")
    return redirect(url_for("imports.view_run", run_id=run.id))


def _run_context(run: ImportRun) -> dict:
    run = import_jobs.refresh(run)
    errors, error_total = [], 0
    if run.final:
        error_total = crm_import.error_count(run.id)
        errors = (
            db.session.execute(crm_import.row_errors_query(run.id).limit(ERROR_PREVIEW))
            .scalars()
            .all()
        )
    return {
        "run": run,
        "progress": import_jobs.progress_of(run),
        "errors": errors,
        "error_total": error_total,
        "failure": crm_import.describe_failure(run) if run.status == "failed" else "",
        "describe_error": crm_import.describe_row_error,
        "field_label": crm_import.field_label,
        **_labels(),
    }


@bp.get("/<int:run_id>")
@permission_required("customer.import")
def view_run(run_id: int):
    _require_all_units()
    return render_template("imports/run.html", **_run_context(_get_run(run_id)))


@bp.get("/<int:run_id>/progress")
@permission_required("customer.import")
def run_progress(run_id: int):
    """The status partial for htmx polling (it stops polling once final); the full run
    page for a plain request."""
    _require_all_units()
    return render_page_or_partial(
        "imports/run.html", "imports/_status.html", **_run_context(_get_run(run_id))
    )


@bp.get("/<int:run_id>/errors.csv")
@permission_required("customer.import")
def download_errors(run_id: int):
    _require_all_units()
    run = _get_run(run_id)
    with_raw = current_user.can("customer.view_full_mobile")
    header = crm_import.error_csv_header()
    rows = crm_import.error_csv_rows(run.id)
    if not with_raw:  # the raw row holds the full mobile (R-03 minimisation)
        header = header[:-1]
        rows = (row[:-1] for row in rows)
    filename = f"crm-import-{run.id}-errors.csv"
    return Response(
        stream_with_context(stream_csv(header, rows)),
        mimetype="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
