"""The CRM import (R-20 to R-23; issue 3 item 2; the contract is docs/crm-import.md).

An extract (a CSV file, or the rows of ``CRM_SQL_QUERY``) goes through one pipeline:

1. ``FileSource.inspect`` refuses what is not a CSV extract before any row is read:
   missing, empty or oversized files (the size is checked before reading), binary data,
   Excel workbooks, UTF-16, bytes that are neither UTF-8 nor GB18030, a wrong header.
2. In ONE database transaction the rows are streamed in batches into a temporary
   staging table (COPY on PostgreSQL, executemany on SQLite), each row checked in Python
   on the way: row errors go to ``import_row_errors``, rows without a mobile are skipped
   (Art 20), mobiles are normalised and classified with ``phonenumbers`` (cached per
   number range, so a million rows cost a few thousand look-ups).
3. Set-based SQL over the staging table: duplicated CRM ids become row errors, numbers
   shared by several customers of the extract become doubtful, a diff against
   ``customers`` (by ``row_hash``) finds new and changed rows, and INSERT ... SELECT /
   UPDATE ... FROM apply them with their history, tags and verification-list entries.
4. The audit row and the run's report are written and the transaction commits. Any
   failure rolls everything back and the run is marked failed in a new transaction:
   customer data is either fully imported or untouched (R-22).

Re-importing the same extract finds every row's hash unchanged and writes nothing but
the report (idempotence). The rules for each field, the meaning of "doubtful" and what
the CRM may and may not change are in docs/crm-import.md.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import functools
import gc
import hashlib
import io
import json
import os
import re
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import phonenumbers
from flask import current_app
from flask_babel import force_locale, gettext
from phonenumbers import PhoneNumberType
from phonenumbers import carrier as pn_carrier
from sqlalchemy import create_engine, func, select, text, tuple_
from sqlalchemy.engine import Connection

from app.extensions import db
from app.models import ImportRowError, ImportRun, Unit, User
from app.services import audit
from app.services.customers import normalize_mobile, recount_shared_mobiles
from app.services.errors import DomainError, ValidationError
from app.timeutil import local_today, utcnow


def N_(message: str) -> str:
    """Mark a msgid for extraction; it is translated where it is shown."""
    return message


HEADER = (
    "crm_id",
    "name",
    "mobile",
    "branch_code",
    "manager",
    "opened_on",
    "risk_level",
    "tags",
    "status",
)
RISK_LEVELS = {f"C{i}": f"C{i}" for i in range(1, 6)} | {f"c{i}": f"C{i}" for i in range(1, 6)}
STATUSES = {
    "active": True,
    "closed": False,
    "Active": True,
    "Closed": False,
    "ACTIVE": True,
    "CLOSED": False,
}
# Number ranges of virtual operators (MVNO): real customers rarely keep them for years,
# and they are the ranges fraud and throw-away numbers come from (Art 24: doubtful).
VIRTUAL_OPERATOR_PREFIXES = ("162", "165", "167", "170", "171")
CARRIERS = {
    "China Mobile": "china_mobile",
    "China Unicom": "china_unicom",
    "China Telecom": "china_telecom",
    "China Broadnet": "china_broadnet",
}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")
_FORMULA_FIRST = frozenset(c for c in _FORMULA_START)
_CRM_ID_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z_.\-]{0,31}\Z")
_DATE_RE = re.compile(r"(\d{4})[-/]?(\d{1,2})[-/]?(\d{1,2})\Z")
_EXTRACT_RE = re.compile(r"customers_(\d{8})\.csv\Z")
FIELD_MAX = {"crm_id": 32, "name": 100, "mobile": 32}
EARLIEST_OPENING = date(1990, 1, 1)  # the exchanges opened in 1990
BATCH_ROWS = 5000
READ_SHARE = 70  # percent of the progress bar the reading phase fills
_PG_LOCK_KEY = 20_220_003  # serialises imports on PostgreSQL

FIELD_LABELS = {
    "row": N_("Row"),
    "crm_id": N_("CRM id"),
    "name": N_("Name"),
    "mobile": N_("Mobile"),
    "branch_code": N_("Branch code"),
    "manager": N_("Serving staff"),
    "opened_on": N_("Account opened"),
    "risk_level": N_("Risk level"),
    "tags": N_("Tags"),
    "status": N_("Status"),
}

# code: text shown to people (translated where shown); ``max`` comes from FIELD_MAX.
ROW_ERRORS = {
    "columns": N_("The row has a different number of fields than the header."),
    "required": N_("This field is empty."),
    "too_long": N_("Too long: at most %(max)s characters."),
    "bad_crm_id": N_(
        "A CRM id holds only letters, digits, '.', '_' and '-', and starts with a letter or digit."
    ),
    "duplicate_crm_id": N_(
        "This CRM id is on several rows of the file; none of them was imported."
    ),
    "formula": N_(
        "The cell starts like a spreadsheet formula (= + - @); it is refused to protect whoever opens an export."
    ),
    "unknown_branch": N_("No branch has this code."),
    "unknown_manager": N_("No user has this username."),
    "inactive_manager": N_("This user account is deactivated."),
    "manager_not_in_branch": N_("This user does not belong to the customer's branch."),
    "bad_date": N_("Not a date; write YYYY-MM-DD."),
    "date_out_of_range": N_("The date lies in the future or before 1990."),
    "bad_risk_level": N_("The risk level must be C1, C2, C3, C4 or C5."),
    "bad_status": N_("The status must be active or closed."),
    "bad_tag": N_("A tag has at most 40 characters, all tags together at most 400."),
}

FATAL_ERRORS = {
    "missing": N_("The file %(name)s does not exist or cannot be read."),
    "empty": N_("The file is empty."),
    "too_large": N_("The file has %(size_mb)s MB; the CRM import accepts at most %(max_mb)s MB."),
    "binary": N_("This is not a CSV text file: it contains binary data."),
    "spreadsheet": N_(
        'This is an Excel workbook, not a CSV file. Save it in Excel as "CSV UTF-8" and import that.'
    ),
    "utf16": N_("The file is UTF-16 text. Save it as UTF-8 or GB18030 CSV."),
    "encoding": N_(
        "The file is neither UTF-8 nor GB18030 text (undecodable bytes near byte %(offset)s)."
    ),
    "header": N_(
        "The first line must be the header %(expected)s. Missing: %(missing)s. Not expected: %(unexpected)s."
    ),
    "not_csv": N_("The file is not valid CSV at line %(line)s: %(error)s"),
    "no_rows": N_("The file has a header but no customer rows."),
    "sql_config": N_("No CRM database is configured (CRM_DATABASE_URL)."),
    "sql_error": N_("The CRM database query failed: %(error)s"),
    "sql_columns": N_(
        "The CRM query must return the columns %(expected)s. Missing: %(missing)s. Not expected: %(unexpected)s."
    ),
    "crash": N_(
        "The import stopped on an unexpected error (%(error)s); no customer data was changed."
    ),
    "stopped": N_(
        "The import job stopped without finishing (the worker crashed or was stopped); no customer data was changed."
    ),
    "queue": N_("The job queue is not reachable, so the import could not start."),
}

Progress = Callable[[int | None, int, str], None]


class ImportFailed(DomainError):
    """The extract as a whole cannot be imported; nothing was changed.

    ``code`` names the reason (a key of ``FATAL_ERRORS``), ``params`` fill its text.
    """

    status = 422

    def __init__(self, code: str, **params):
        self.code = code
        self.params = {k: str(v) for k, v in params.items()}
        super().__init__(gettext(FATAL_ERRORS[code], **self.params))


def describe_failure(run: ImportRun) -> str:
    """Why a run failed, in the reader's language."""
    if run.error_code in FATAL_ERRORS:
        return gettext(FATAL_ERRORS[run.error_code], **run.error_param_dict)
    return run.error_message


def describe_row_error(code: str, field: str = "", message: str = "") -> str:
    """What is wrong with a row (an ``ImportRowError``'s code and field), in the reader's
    language."""
    if code in ROW_ERRORS:
        return gettext(ROW_ERRORS[code], max=FIELD_MAX.get(field, ""))
    return message


def field_label(field: str) -> str:
    return gettext(FIELD_LABELS[field]) if field in FIELD_LABELS else field


# ---------------------------------------------------------------- mobile numbers

# A million rows cannot afford phonenumbers' full parse (~40 µs each). For the usual shape
# (11 digits starting with 1) the check is split in two exact parts: the region's own
# mobile pattern decides validity, and the carrier, which phonenumbers keys on a short
# prefix, is memoised per prefix of that length. Anything else takes the full parse. The
# unit tests compare this fast path with phonenumbers over every number range.
_CN_MOBILE = re.compile(
    phonenumbers.PhoneMetadata.metadata_for_region("CN").mobile.national_number_pattern
)


@functools.cache
def _carrier_prefix_digits() -> int:
    from phonenumbers.carrierdata import CARRIER_DATA

    return max(len(k) for k in CARRIER_DATA if k.startswith("86")) - 2


@functools.lru_cache(maxsize=100_000)
def _classify_range(prefix: str) -> tuple[str, str, str]:
    """(status, carrier, note) of a valid 11-digit mobile by its carrier prefix."""
    return _classify_number(prefix + "0" * (11 - len(prefix)), checked=True)


def _classify_number(national: str, checked: bool = False) -> tuple[str, str, str]:
    """(status, carrier, note) by phonenumbers; ``checked``: validity is known already."""
    try:
        number = phonenumbers.parse(national, "CN")
    except phonenumbers.NumberParseException:
        return "invalid", "", "not a phone number"
    if not checked and not phonenumbers.is_valid_number(number):
        return "invalid", "", "not a valid Chinese mobile number"
    if phonenumbers.region_code_for_number(number) != "CN":
        return "invalid", "", "not a Chinese number"
    kind = phonenumbers.number_type(number)
    if kind not in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE):
        return "doubtful", "", "valid number, but not a mobile (no SMS)"
    carrier = CARRIERS.get(pn_carrier.name_for_number(number, "en"), "unknown")
    if national[:3] in VIRTUAL_OPERATOR_PREFIXES:
        return "doubtful", carrier, f"virtual operator range {national[:3]}"
    if carrier == "unknown":
        return "doubtful", carrier, "carrier unknown for this number range"
    return "valid", carrier, ""


def classify_mobile(raw: str) -> tuple[str, str, str, str]:
    """(mobile, status, carrier, note) for a non-empty mobile cell of the CRM.

    ``mobile`` is the 11-digit national number when it is one (full-width digits, spaces,
    dashes and +86 removed), else the cell as normalised. ``status``: valid, invalid (not
    a Chinese mobile) or doubtful (a real number that may not reach the customer: a
    landline, a virtual-operator range, an unknown carrier); ``note`` says why.
    """
    if not raw.isascii():
        raw = unicodedata.normalize("NFKC", raw)
    mobile = normalize_mobile(raw)
    if len(mobile) == 11 and mobile[0] == "1" and _CN_MOBILE.fullmatch(mobile):
        return (mobile, *_classify_range(mobile[: _carrier_prefix_digits()]))
    if not mobile:
        return raw.strip(), "invalid", "", "not a phone number"
    if mobile.isascii() and mobile.isdigit():
        return (mobile, *_classify_number(mobile))
    return mobile, "invalid", "", "not a phone number"


# ---------------------------------------------------------------- sources


@dataclass
class FileInfo:
    size: int
    sha256: str
    encoding: str


def _header_problems(cells: list[str], code: str) -> list[int]:
    """Column positions of HEADER in ``cells``, or ImportFailed naming what is wrong."""
    names = [c.strip().lstrip("\ufeff").strip().lower() for c in cells]
    while names and names[-1] == "":
        names.pop()
    missing = [h for h in HEADER if h not in names]
    unexpected = [n for n in names if n not in HEADER]
    doubled = {n for n in names if names.count(n) > 1}
    if missing or unexpected or doubled:
        raise ImportFailed(
            code,
            expected=",".join(HEADER),
            missing=",".join(missing) or "-",
            unexpected=",".join(unexpected + sorted(doubled)) or "-",
        )
    return [names.index(h) for h in HEADER]


class FileSource:
    """A CSV extract on disk (UTF-8 with or without BOM, or GB18030)."""

    def __init__(self, path: str | os.PathLike, max_bytes: int):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.info: FileInfo | None = None
        self._binary = None

    def inspect(self) -> FileInfo:
        """Check size, content and encoding (one pass) and the header; ImportFailed if bad."""
        try:
            size = self.path.stat().st_size
        except OSError:
            raise ImportFailed("missing", name=self.path.name) from None
        if size == 0:
            raise ImportFailed("empty")
        if size > self.max_bytes:
            raise ImportFailed("too_large", size_mb=_mb(size), max_mb=_mb(self.max_bytes))
        digest = hashlib.sha256()
        utf8 = codecs.getincrementaldecoder("utf-8")()
        utf8_ok = True
        offset = 0
        bom = False
        with self.path.open("rb") as fh:
            first = True
            while chunk := fh.read(1 << 20):
                if first:
                    _refuse_non_text(chunk)
                    bom = chunk.startswith(codecs.BOM_UTF8)
                    first = False
                if b"\x00" in chunk:
                    raise ImportFailed("binary")
                digest.update(chunk)
                if utf8_ok:
                    try:
                        utf8.decode(chunk)
                    except UnicodeDecodeError as exc:
                        utf8_ok = False
                        offset += exc.start
                    else:
                        offset += len(chunk)
            if utf8_ok:
                try:
                    utf8.decode(b"", final=True)
                except UnicodeDecodeError:
                    utf8_ok = False
        if utf8_ok:
            encoding = "utf-8-sig" if bom else "utf-8"
        else:
            encoding = "gb18030"
            _check_decodes(self.path, encoding, offset)
        self.info = FileInfo(size=size, sha256=digest.hexdigest(), encoding=encoding)
        with self.path.open("r", encoding=encoding, newline="") as fh:
            try:
                header = next(csv.reader(fh), [])
            except csv.Error as exc:
                raise ImportFailed("not_csv", line=1, error=str(exc)) from None
        self.positions = _header_problems(header, "header")
        return self.info

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """(line number, cells) of every non-blank data row, in file order."""
        info = self.info or self.inspect()
        with self.path.open("rb") as binary:
            self._binary = binary
            textio = io.TextIOWrapper(binary, encoding=info.encoding, newline="")
            reader = csv.reader(textio)
            try:
                next(reader)
                for cells in reader:
                    if not cells or not any(cells):
                        continue
                    yield reader.line_num, cells
            except csv.Error as exc:
                raise ImportFailed("not_csv", line=reader.line_num, error=str(exc)) from None
            finally:
                self._binary = None

    def fraction(self) -> float | None:
        if self._binary is None or not self.info:
            return None
        try:
            return min(self._binary.tell() / self.info.size, 1.0)
        except (OSError, ValueError):
            return None


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f}".rstrip("0").rstrip(".")


def _refuse_non_text(chunk: bytes) -> None:
    if chunk.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        raise ImportFailed("spreadsheet")
    if chunk.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ImportFailed("utf16")


def _check_decodes(path: Path, encoding: str, utf8_offset: int) -> None:
    decoder = codecs.getincrementaldecoder(encoding)()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                raise ImportFailed("encoding", offset=utf8_offset) from None
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise ImportFailed("encoding", offset=utf8_offset) from None


class SqlSource:
    """The rows of ``query`` on the CRM database ``url``, with the extract's column names."""

    def __init__(self, url: str, query: str):
        if not url:
            raise ImportFailed("sql_config")
        self.url = url
        self.query = query
        self.positions = list(range(len(HEADER)))
        self.info = FileInfo(size=0, sha256="", encoding="")

    def inspect(self) -> FileInfo:
        return self.info

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                try:
                    result = conn.execution_options(
                        stream_results=True, yield_per=BATCH_ROWS
                    ).execute(text(self.query))
                    self.positions = _header_problems(list(result.keys()), "sql_columns")
                    for line, row in enumerate(result, start=1):
                        yield line, [_sql_cell(v) for v in row]
                except ImportFailed:
                    raise
                except Exception as exc:  # any driver error: the CRM side is at fault
                    raise ImportFailed("sql_error", error=_short(exc)) from None
        finally:
            engine.dispose()

    def fraction(self) -> float | None:
        return None


def _sql_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _short(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]


# ---------------------------------------------------------------- row checks

STAGE_COLUMNS = (
    "line_no",
    "state",
    "crm_id",
    "name",
    "mobile",
    "mobile_tail",
    "mobile_status",
    "mobile_note",
    "carrier",
    "branch_id",
    "manager_id",
    "opened_on",
    "risk_level",
    "tags",
    "active",
    "row_hash",
    "raw",
)
ERROR_COLUMNS = ("run_id", "line_no", "crm_id", "field", "code", "value", "message", "raw")


def _tags_ok(tags: list[str]) -> bool:
    return (
        not any(len(t) > 40 or t[0] in _FORMULA_FIRST for t in tags) and len(";".join(tags)) <= 400
    )


def _raw_line(cells: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(cells)
    return buf.getvalue()


class RowChecker:
    """Checks one data row and turns it into a staging row, tags and row errors.

    Branches and users are looked up once per import; dates and manager hashes are
    memoised because a million rows hold only a few thousand distinct values.
    """

    def __init__(self, run_id: int, positions: list[int]):
        self.run_id = run_id
        self.set_positions(positions)
        self.branches = {}
        for uid, code in db.session.execute(
            select(Unit.id, Unit.code).where(Unit.kind == "branch", Unit.active.is_(True))
        ):
            self.branches[code] = self.branches[code.upper()] = (uid, code)
        self.users = {
            name: (uid, unit_id, active)
            for uid, name, unit_id, active in db.session.execute(
                select(User.id, User.username, User.unit_id, User.active)
            )
        }
        self.seen_mobiles: set[int] = set()
        self.shared_mobiles: set[str] = set()  # valid numbers on more than one row
        self.dates: dict[str, str] = {}
        self.date_errors: dict[str, str] = {}
        self.prefix_digits = _carrier_prefix_digits()
        self.manager_hashes: dict[str, str] = {}
        self.today = local_today()

    def set_positions(self, positions: list[int]) -> None:
        """Where each HEADER column sits in a row (the header may order them freely)."""
        self.positions = positions
        self.in_order = positions == list(range(len(HEADER)))

    def _date(self, value: str) -> str:
        """The ISO form of an opening date, or "" (the reason is in ``date_errors``)."""
        iso, error = "", "bad_date"
        m = _DATE_RE.match(value)
        if m:
            try:
                d = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
            except ValueError:
                d = None
            if d is not None:
                if EARLIEST_OPENING <= d <= self.today:
                    iso = d.isoformat()
                else:
                    error = "date_out_of_range"
        self.dates[value] = iso
        if not iso:
            self.date_errors[value] = error
        return iso

    def check(self, line_no: int, cells: list[str]):
        """(staging row, tags, errors) for one data row.

        A well-formed row takes the fast path below (a few dict look-ups and one hash);
        anything unusual goes to ``_reject``, which names every problem of the row.
        """
        n = len(cells)
        if n != 9 and (n < 9 or any(cells[9:])):
            raw = _raw_line(cells)
            crm = cells[self.positions[0]].strip() if n > self.positions[0] else ""
            return (
                self._bad(line_no, None, raw),
                (),
                [self._error(line_no, crm, "row", "columns", str(n), raw)],
            )
        if self.in_order:
            crm_id, name, mobile_raw, branch_code, manager, opened, risk, tags, status = map(
                str.strip, cells if n == 9 else cells[:9]
            )
        else:
            crm_id, name, mobile_raw, branch_code, manager, opened, risk, tags, status = (
                cells[i].strip() for i in self.positions
            )
        if not mobile_raw:  # Art 20: only customers with a mobile are imported
            crm = crm_id if _CRM_ID_RE.match(crm_id) else None
            return (
                (
                    line_no,
                    "skip",
                    crm,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    _raw_line(cells),
                ),
                (),
                (),
            )
        if len(mobile_raw) == 11 and _CN_MOBILE.fullmatch(mobile_raw):
            mobile = mobile_raw
            mobile_status, carrier, note = _classify_range(mobile_raw[: self.prefix_digits])
        elif mobile_raw[0] in _FORMULA_FIRST and not (
            mobile_raw[0] in "+＋" and mobile_raw[1:2].isdigit()
        ):
            mobile = None
        else:
            mobile, mobile_status, carrier, note = classify_mobile(mobile_raw)
        branches = self.branches
        branch = branches.get(branch_code) or branches.get(branch_code.upper())
        staff = self.users.get(manager)
        opened_on = self.dates.get(opened)
        if opened_on is None:
            opened_on = self._date(opened)
        risk_level = RISK_LEVELS.get(risk)
        active = STATUSES.get(status)
        if active is None:
            active = STATUSES.get(status.lower())
        tag_list: list[str] = []
        if tags:
            for tag in tags.replace("；", ";").split(";"):
                tag = tag.strip()
                if tag and tag not in tag_list:
                    tag_list.append(tag)
        if (
            mobile is None
            or len(mobile) > 32
            or branch is None
            or staff is None
            or not staff[2]
            or staff[1] != branch[0]
            or not opened_on
            or risk_level is None
            or active is None
            or not name
            or len(name) > 100
            or name[0] in _FORMULA_FIRST
            or not _CRM_ID_RE.match(crm_id)
            or (tag_list and not _tags_ok(tag_list))
        ):
            return self._reject(
                line_no,
                cells,
                crm_id,
                name,
                mobile_raw,
                mobile,
                branch_code,
                branch,
                manager,
                staff,
                opened,
                risk,
                tags,
                tag_list,
                status,
            )
        tags_joined = ";".join(tag_list)
        body = "\x1f".join(
            (
                crm_id,
                name,
                mobile,
                branch[1],
                opened_on,
                risk_level,
                tags_joined,
                "active" if active else "closed",
            )
        )
        manager_hash = self.manager_hashes.get(manager)
        if manager_hash is None:
            manager_hash = hashlib.sha1(manager.encode()).hexdigest()[:8]
            self.manager_hashes[manager] = manager_hash
        # The last 8 characters hash the serving staff alone: the apply step changes a
        # customer's manager only when the CRM changed it (a handover here stays, R-31).
        row_hash = hashlib.sha1(body.encode()).hexdigest()[:32] + manager_hash
        if mobile_status == "valid":
            key = int(mobile)
            if key in self.seen_mobiles:
                self.shared_mobiles.add(mobile)
            else:
                self.seen_mobiles.add(key)
        stage = (
            line_no,
            "ok",
            crm_id,
            name,
            mobile,
            mobile[-4:],
            mobile_status,
            note[:100],
            carrier,
            branch[0],
            staff[0],
            opened_on,
            risk_level,
            tags_joined,
            active,
            row_hash,
            None,
        )
        return stage, [(line_no, t) for t in tag_list] if tag_list else (), ()

    def _reject(
        self,
        line_no,
        cells,
        crm_id,
        name,
        mobile_raw,
        mobile,
        branch_code,
        branch,
        manager,
        staff,
        opened,
        risk,
        tags,
        tag_list,
        status,
    ):
        """The bad-row answer: every problem of the row as an error, nothing staged."""
        problems = []  # (field, code, value)

        def formula_or(value: str, code: str) -> str:
            return "formula" if value.startswith(_FORMULA_START) else code

        if not crm_id:
            problems.append(("crm_id", "required", ""))
        elif len(crm_id) > 32:
            problems.append(("crm_id", "too_long", crm_id))
        elif not _CRM_ID_RE.match(crm_id):
            problems.append(("crm_id", formula_or(crm_id, "bad_crm_id"), crm_id))
        if not name:
            problems.append(("name", "required", ""))
        elif name.startswith(_FORMULA_START):
            problems.append(("name", "formula", name))
        elif len(name) > 100:
            problems.append(("name", "too_long", name))
        if mobile is None:
            problems.append(("mobile", "formula", mobile_raw))
        elif len(mobile) > 32:
            problems.append(("mobile", "too_long", mobile_raw))
        if not branch_code:
            problems.append(("branch_code", "required", ""))
        elif branch is None:
            problems.append(("branch_code", formula_or(branch_code, "unknown_branch"), branch_code))
        if not manager:
            problems.append(("manager", "required", ""))
        elif staff is None:
            problems.append(("manager", formula_or(manager, "unknown_manager"), manager))
        elif not staff[2]:
            problems.append(("manager", "inactive_manager", manager))
        elif branch is not None and staff[1] != branch[0]:
            problems.append(("manager", "manager_not_in_branch", manager))
        if not opened:
            problems.append(("opened_on", "required", ""))
        elif not self.dates.get(opened):
            problems.append(("opened_on", formula_or(opened, self.date_errors[opened]), opened))
        if not risk:
            problems.append(("risk_level", "required", ""))
        elif risk not in RISK_LEVELS:
            problems.append(("risk_level", formula_or(risk, "bad_risk_level"), risk))
        if not status:
            problems.append(("status", "required", ""))
        elif status.lower() not in STATUSES:
            problems.append(("status", formula_or(status, "bad_status"), status))
        if tag_list and not _tags_ok(tag_list):
            formula = any(t.startswith(_FORMULA_START) for t in tag_list)
            problems.append(("tags", "formula" if formula else "bad_tag", tags))
        raw = _raw_line(cells)
        crm = crm_id if _CRM_ID_RE.match(crm_id) else None
        return (
            self._bad(line_no, crm, raw),
            (),
            [self._error(line_no, crm_id, f, c, v, raw) for f, c, v in problems],
        )

    def _bad(self, line_no: int, crm_id: str | None, raw: str):
        return (
            line_no,
            "bad",
            crm_id,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            raw,
        )

    def _error(self, line_no, crm_id, field, code, value, raw):
        message = ROW_ERRORS[code] % {"max": FIELD_MAX.get(field, "")}
        return (
            self.run_id,
            line_no,
            (crm_id or "")[:64],
            field,
            code,
            (value or "")[:200],
            message[:400],
            raw,
        )


# ---------------------------------------------------------------- staging


class Staging:
    """The temporary tables of one import, on the import transaction's connection.

    On PostgreSQL the checked rows flow through ONE long ``COPY crm_stage`` for the whole
    file, so the server stores them while Python checks the next ones (a COPY per batch
    would wait for the server at every batch); tag rows are derived from the staged tags
    in SQL, and row errors wait in memory until the stream pauses. SQLite, in-process,
    takes each batch with ``executemany``, tags in a table of their own.
    """

    ERROR_BUFFER = 20_000  # row errors held before the stream pauses to write them

    def __init__(self, conn: Connection):
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"
        self._cursor = None
        self._copy_cm = None
        self._copy = None
        self._errors: list[tuple] = []

    def on_commit(self) -> str:
        return " ON COMMIT DROP" if self.pg else ""

    def drop(self) -> None:
        for table in ("crm_diff", "crm_shared", "crm_tags", "crm_stage"):
            self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")

    def create(self) -> None:
        self.drop()
        boolean = "boolean" if self.pg else "integer"
        line = "integer" if self.pg else "integer PRIMARY KEY"
        opened = "date" if self.pg else "text"
        self.conn.exec_driver_sql(
            f"CREATE TEMP TABLE crm_stage (line_no {line}, state varchar(4), crm_id varchar(32), "
            "name varchar(100), mobile varchar(32), mobile_tail varchar(4), "
            "mobile_status varchar(10), mobile_note varchar(100), carrier varchar(20), "
            f"branch_id integer, manager_id integer, opened_on {opened}, risk_level varchar(2), "
            f"tags varchar(400), active {boolean}, row_hash varchar(40), raw text, "
            f"dup {boolean} NOT NULL DEFAULT false)" + self.on_commit()
        )
        if not self.pg:
            self.conn.exec_driver_sql(
                "CREATE TEMP TABLE crm_tags (line_no integer, tag varchar(40))"
            )

    def add(self, stage_rows: list[tuple], tag_rows: list[tuple], error_rows: list[tuple]) -> None:
        """Stage one batch of checked rows with their tags and row errors."""
        if not self.pg:
            self.write("crm_stage", STAGE_COLUMNS, stage_rows)
            self.write("crm_tags", ("line_no", "tag"), tag_rows)
            self.write("import_row_errors", ERROR_COLUMNS, error_rows)
            return
        self._errors.extend(error_rows)
        if len(self._errors) >= self.ERROR_BUFFER:
            self.pause()
        if self._copy is None:
            self._cursor = self.conn.connection.driver_connection.cursor()
            self._copy_cm = self._cursor.copy(
                f"COPY crm_stage ({', '.join(STAGE_COLUMNS)}) FROM STDIN"
            )
            self._copy = self._copy_cm.__enter__()
        write_row = self._copy.write_row
        for row in stage_rows:
            write_row(row)

    def abort(self) -> None:
        """Cancel a running COPY so that the transaction can roll back."""
        if self._copy is not None:
            copy_cm, self._copy, self._copy_cm = self._copy_cm, None, None
            # The server answers the cancelled COPY with an error: expected here.
            with contextlib.suppress(Exception):
                copy_cm.__exit__(RuntimeError, RuntimeError("import stopped"), None)
            self._cursor.close()
            self._cursor = None

    def pause(self) -> None:
        """End the running COPY (waiting for the server) and write the buffered errors."""
        if self._copy is not None:
            copy_cm, self._copy, self._copy_cm = self._copy_cm, None, None
            copy_cm.__exit__(None, None, None)
            self._cursor.close()
            self._cursor = None
        errors, self._errors = self._errors, []
        self.write("import_row_errors", ERROR_COLUMNS, errors)

    def write(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
        """Bulk-append ``rows``: COPY on PostgreSQL, one executemany on SQLite."""
        if not rows:
            return
        names = ", ".join(columns)
        if self.pg:
            raw = self.conn.connection.driver_connection
            with raw.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" * len(columns))
            self.conn.connection.driver_connection.executemany(
                f"INSERT INTO {table} ({names}) VALUES ({marks})", rows
            )

    def finish_loading(self, shared_mobiles: set[str]) -> None:
        """Index and analyse the loaded tables; ``shared_mobiles`` are the candidates for
        "one number, several customers" that the reading pass saw."""
        self.conn.exec_driver_sql(
            "CREATE TEMP TABLE crm_shared (mobile varchar(32) PRIMARY KEY)" + self.on_commit()
        )
        self.write("crm_shared", ("mobile",), [(m,) for m in sorted(shared_mobiles)])
        self.conn.exec_driver_sql("CREATE INDEX crm_stage_crm_id ON crm_stage (crm_id)")
        if self.pg:
            self.conn.exec_driver_sql("ALTER TABLE crm_stage ADD PRIMARY KEY (line_no)")
            self.conn.exec_driver_sql("ANALYZE crm_stage")
        else:
            self.conn.exec_driver_sql("CREATE INDEX crm_tags_line ON crm_tags (line_no)")

    def sql(self, statement: str, **params):
        return self.conn.execute(text(statement), params)


# ---------------------------------------------------------------- runs


def upload_dir() -> Path:
    configured = current_app.config.get("CRM_UPLOAD_DIR")
    return (
        Path(configured) if configured else Path(current_app.config["CRM_IMPORT_DIR"]) / "uploads"
    )


def _new_run(
    source: str, *, filename: str, user: User | None, path: str = "", info: FileInfo | None = None
) -> ImportRun:
    run = ImportRun(
        source=source,
        filename=filename[:255],
        path=path,
        status="queued",
        started_by_id=user.id if user is not None else None,
        created_at=utcnow(),
        file_sha256=info.sha256 if info else "",
        file_size=info.size if info else 0,
        encoding=info.encoding if info else "",
    )
    db.session.add(run)
    db.session.flush()
    audit.record(
        "crm_import.queued",
        actor=user,
        target=run,
        details={"source": source, "filename": run.filename, "sha256": run.file_sha256},
    )
    return run


def accept_upload(stream, filename: str, *, user: User) -> ImportRun:
    """Store an uploaded extract and queue its run; the caller commits and launches it.

    The file is checked at once (size, CSV, encoding, header), so a wrong file gets its
    message on the upload page (``ValidationError``) instead of a failed run.
    """
    name = os.path.basename((filename or "").replace("\\", "/")).strip()
    if not name:
        raise ValidationError(gettext("Choose the CSV file to import."))
    if not name.lower().endswith((".csv", ".txt")):
        raise ValidationError(
            gettext("Only CSV files (.csv) can be imported; %(name)s is not one.", name=name)
        )
    folder = upload_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"upload-{uuid.uuid4().hex}.csv"
    limit = current_app.config["CRM_IMPORT_MAX_BYTES"]
    written = 0
    with path.open("wb") as out:
        while chunk := stream.read(1 << 20):
            written += len(chunk)
            if written > limit:
                out.close()
                path.unlink(missing_ok=True)
                raise ValidationError(
                    ImportFailed("too_large", size_mb=f">{_mb(limit)}", max_mb=_mb(limit)).message
                )
            out.write(chunk)
    try:
        info = FileSource(path, limit).inspect()
    except ImportFailed as exc:
        path.unlink(missing_ok=True)
        raise ValidationError(exc.message) from None
    return _new_run("upload", filename=name, user=user, path=str(path), info=info)


def create_file_run(path: str | os.PathLike, *, source: str, user: User | None = None) -> ImportRun:
    """Queue a run for a file on disk (the CLI and the daily pick-up); the caller commits.

    The file is checked when the run executes, so a bad file yields a failed run with
    its reason in the report and the audit log.
    """
    path = Path(path).resolve()
    return _new_run(source, filename=path.name, user=user, path=str(path))


def create_sql_run(*, user: User | None = None) -> ImportRun:
    """Queue a run of ``CRM_SQL_QUERY`` against ``CRM_DATABASE_URL`` (source "sql", whoever
    starts it: a user, the CLI or the daily task); the caller commits."""
    if not current_app.config.get("CRM_DATABASE_URL"):
        raise ValidationError(ImportFailed("sql_config").message)
    return _new_run("sql", filename="CRM_SQL_QUERY", user=user)


def newest_extract(folder: str | os.PathLike) -> Path | None:
    """The ``customers_YYYYMMDD.csv`` with the latest date in ``folder`` (None if none).

    Extracts are full snapshots, so only the newest one matters: an older file that was
    never imported is superseded by it.
    """
    best: tuple[str, Path] | None = None
    folder = Path(folder)
    if not folder.is_dir():
        return None
    for entry in folder.iterdir():
        m = _EXTRACT_RE.match(entry.name)
        if not m or not entry.is_file():
            continue
        try:
            datetime.strptime(m.group(1), "%Y%m%d")
        except ValueError:
            continue
        if best is None or m.group(1) > best[0]:
            best = (m.group(1), entry)
    return best[1] if best else None


def already_imported(filename: str) -> bool:
    """True when a run of this extract succeeded or is still on its way."""
    return (
        db.session.execute(
            select(func.count(ImportRun.id)).where(
                ImportRun.filename == filename,
                ImportRun.source.in_(("schedule", "cli", "upload")),
                ImportRun.status.in_(("queued", "running", "succeeded")),
            )
        ).scalar_one()
        > 0
    )


def source_for(run: ImportRun):
    if run.source == "sql":
        return SqlSource(
            current_app.config.get("CRM_DATABASE_URL", ""), current_app.config["CRM_SQL_QUERY"]
        )
    return FileSource(run.path, current_app.config["CRM_IMPORT_MAX_BYTES"])


def run_import(run_id: int, *, on_progress: Progress | None = None) -> ImportRun:
    """Execute a queued run to its end and return it (succeeded or failed).

    A run that is not queued is returned as it is, so a re-delivered job does nothing.
    ``ImportFailed`` (a bad extract) ends as a failed run; any other exception marks the
    run failed too and is raised again for the worker's log. Either way no customer data
    changed.
    """
    run = db.session.get(ImportRun, run_id)
    if run is None or run.status != "queued":
        return run
    run.status = "running"
    run.started_at = utcnow()
    db.session.commit()
    progress = on_progress or (lambda percent, rows, phase: None)
    staging = Staging(db.session.connection())
    try:
        try:
            _execute(run, source_for(run), staging, progress)
        except ImportFailed as exc:
            db.session.rollback()
            mark_failed(run_id, exc.code, exc.params)
        except Exception as exc:
            db.session.rollback()
            mark_failed(run_id, "crash", {"error": _short(exc)})
            raise
    finally:
        db.session.rollback()
        staging = Staging(db.session.connection())
        staging.drop()
        if not staging.pg:
            staging.conn.exec_driver_sql("PRAGMA cache_size = -2000")
        db.session.commit()
        if run.source == "upload" and run.path:
            Path(run.path).unlink(missing_ok=True)
    run = db.session.get(ImportRun, run_id)
    progress(100, run.rows_processed, run.status)
    return run


def mark_failed(run_id: int, code: str, params: dict | None = None) -> ImportRun:
    """Record that a run failed (own transaction, audit row); commits."""
    params = {k: str(v) for k, v in (params or {}).items()}
    run = db.session.get(ImportRun, run_id)
    run.status = "failed"
    run.error_code = code
    run.error_params = json.dumps(params, ensure_ascii=False)
    run.error_message = FATAL_ERRORS[code] % params if code in FATAL_ERRORS else code
    run.finished_at = utcnow()
    if run.source == "upload" and run.path:  # nobody will import this upload any more
        Path(run.path).unlink(missing_ok=True)
    audit.record(
        "crm_import.failed",
        actor=run.started_by,
        target=run,
        details={"source": run.source, "filename": run.filename, "reason": code, "params": params},
    )
    db.session.commit()
    return run


def _execute(run: ImportRun, source, staging: Staging, progress: Progress) -> None:
    """Stage, check and apply in one transaction; commits on success."""
    conn = staging.conn
    if staging.pg:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        # Sorts and hash joins over a million staged rows stay in memory instead of
        # spilling to disk (this transaction only).
        conn.exec_driver_sql("SET LOCAL work_mem = '256MB'")
    else:
        # A larger page cache keeps a million-row apply from spilling mid-transaction.
        conn.exec_driver_sql("PRAGMA cache_size = -65536")
    info = source.inspect()
    run.file_sha256, run.file_size, run.encoding = info.sha256, info.size, info.encoding
    staging.create()
    rows, checker = _load(run, source, staging, progress)
    if rows == 0:
        raise ImportFailed("no_rows")
    staging.finish_loading(checker.shared_mobiles)
    del checker
    counts = _apply(run, staging, rows, progress)
    # Numbers are written only here: recount the ones several customers share.
    recount_shared_mobiles()
    now = utcnow()
    run.rows_processed = rows
    run.count_new = counts["new"]
    run.count_updated = counts["updated"]
    run.count_unchanged = counts["unchanged"]
    run.count_skipped = counts["skipped"]
    run.count_invalid = counts["invalid"]
    run.count_flagged = counts["flagged"]
    run.status = "succeeded"
    run.finished_at = now
    audit.record(
        "crm_import.succeeded",
        actor=run.started_by,
        target=run,
        details={
            "source": run.source,
            "filename": run.filename,
            "sha256": run.file_sha256,
            "rows": rows,
            **counts,
        },
    )
    db.session.commit()


def _load(run: ImportRun, source, staging: Staging, progress: Progress):
    """Check every row into the staging tables; returns (data rows, the checker)."""
    checker = RowChecker(run.id, source.positions)
    progress(0, 0, "reading")
    # The loop makes millions of short-lived tuples and no reference cycles: the cyclic
    # garbage collector would only rescan the heap again and again (a third of the time).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        rows = _load_rows(source, staging, checker, progress)
    except BaseException:
        staging.abort()
        raise
    finally:
        if gc_was_enabled:
            gc.enable()
    progress(READ_SHARE, rows, "checking")
    return rows, checker


def _load_rows(source, staging: Staging, checker: RowChecker, progress: Progress) -> int:
    """The reading loop: check rows, write them to the staging tables in batches."""
    check = checker.check
    stage_rows: list[tuple] = []
    tag_rows: list[tuple] = []
    error_rows: list[tuple] = []
    rows = 0
    last_report = time.monotonic()
    for line_no, cells in source.rows():
        if rows == 0:
            checker.set_positions(source.positions)  # a SQL source knows them only now
        stage, tags, errors = check(line_no, cells)
        stage_rows.append(stage)
        if tags:
            tag_rows.extend(tags)
        if errors:
            error_rows.extend(errors)
        rows += 1
        if len(stage_rows) >= BATCH_ROWS:
            staging.add(stage_rows, tag_rows, error_rows)
            stage_rows, tag_rows, error_rows = [], [], []
            now = time.monotonic()
            if now - last_report >= 0.5:
                last_report = now
                fraction = source.fraction()
                progress(
                    int(fraction * READ_SHARE) if fraction is not None else None, rows, "reading"
                )
    staging.add(stage_rows, tag_rows, error_rows)
    staging.pause()
    return rows


_DIFF_SELECT = """
SELECT s.line_no AS line_no, s.crm_id AS crm_id, c.id AS customer_id,
       c.mobile AS old_mobile, c.active AS old_active, c.branch_id AS old_branch_id,
       c.manager_id AS old_manager_id,
       CASE WHEN c.id IS NULL THEN 1 ELSE 0 END AS is_new,
       CASE WHEN c.id IS NULL OR c.tags <> s.tags THEN 1 ELSE 0 END AS tags_changed,
       CASE WHEN c.id IS NULL OR substr(c.row_hash, 33, 8) <> substr(s.row_hash, 33, 8)
                 OR c.branch_id <> s.branch_id THEN 1 ELSE 0 END AS manager_changed
FROM crm_stage s LEFT JOIN customers c ON c.crm_id = s.crm_id
WHERE s.state = 'ok' AND s.dup = false
  AND (c.id IS NULL OR c.row_hash <> s.row_hash OR c.mobile_status <> s.mobile_status)
"""


def _apply(run: ImportRun, st: Staging, rows: int, progress: Progress) -> dict[str, int]:
    """The set-based part: duplicates, shared numbers, the diff, then the writes.

    Boolean literals are written as true/false, which SQLite (3.23+) and PostgreSQL share.
    """
    now = utcnow()

    def step(percent: int, phase: str) -> None:
        progress(percent, rows, phase)

    # Duplicated CRM ids: every row carrying one becomes an error row.
    st.sql(
        "UPDATE crm_stage SET dup = true WHERE crm_id IN (SELECT crm_id FROM crm_stage "
        "WHERE crm_id IS NOT NULL GROUP BY crm_id HAVING COUNT(*) > 1)"
    )
    _duplicate_errors(run.id, st)
    # One number given for several customers: doubtful (Art 24), the branch checks it.
    # The reading pass listed the valid numbers seen twice; rows of a duplicated CRM id
    # do not count, so the candidates are confirmed here.
    st.sql(
        "UPDATE crm_stage SET mobile_status = 'doubtful', "
        "mobile_note = 'the same number is given for several customers' "
        "WHERE state = 'ok' AND dup = false AND mobile_status = 'valid' AND mobile IN ("
        "SELECT mobile FROM crm_stage WHERE mobile IN (SELECT mobile FROM crm_shared) "
        "AND state = 'ok' AND dup = false AND mobile_status = 'valid' "
        "GROUP BY mobile HAVING COUNT(*) > 1)"
    )
    step(READ_SHARE + 4, "comparing")
    counts = dict(
        st.sql(
            "SELECT CASE WHEN dup = true OR state = 'bad' THEN 'invalid' WHEN state = 'skip' "
            "THEN 'skipped' ELSE 'ok' END AS kind, COUNT(*) FROM crm_stage GROUP BY 1"
        ).all()
    )
    flagged = st.sql(
        "SELECT COUNT(*) FROM crm_stage WHERE state = 'ok' AND dup = false "
        "AND mobile_status <> 'valid'"
    ).scalar_one()
    st.sql(f"CREATE TEMP TABLE crm_diff{st.on_commit()} AS {_DIFF_SELECT}")
    st.conn.exec_driver_sql("CREATE INDEX crm_diff_line ON crm_diff (line_no)")
    if st.pg:
        st.conn.exec_driver_sql("ANALYZE crm_diff")
    new, updated = st.sql(
        "SELECT COALESCE(SUM(is_new), 0), COALESCE(SUM(1 - is_new), 0) FROM crm_diff"
    ).one()
    new, updated = int(new), int(updated)
    step(READ_SHARE + 8, "applying")
    if updated:
        _history(run.id, st, now)
        step(READ_SHARE + 12, "applying")
        _close_superseded_checks(run.id, st, now)
        st.sql(
            """
UPDATE customers SET name = s.name, mobile = s.mobile, mobile_tail = s.mobile_tail,
  mobile_status = s.mobile_status, carrier = s.carrier, branch_id = s.branch_id,
  manager_id = CASE WHEN d.manager_changed = 1 THEN s.manager_id ELSE customers.manager_id END,
  awaiting_assignment = CASE WHEN d.manager_changed = 1 THEN false
                             ELSE customers.awaiting_assignment END,
  opened_on = s.opened_on, risk_level = s.risk_level, tags = s.tags, active = s.active,
  row_hash = s.row_hash, updated_at = :now
FROM crm_diff d JOIN crm_stage s ON s.line_no = d.line_no
WHERE d.is_new = 0 AND customers.id = d.customer_id""",
            now=now,
        )
        step(READ_SHARE + 16, "applying")
    dropped = _drop_secondary_indexes(st) if _bulk(st, new) else []
    if new:
        st.sql(
            """
INSERT INTO customers (crm_id, name, mobile, mobile_tail, mobile_status, carrier, branch_id,
  manager_id, awaiting_assignment, opened_on, risk_level, tags, active, consent, row_hash,
  created_at, updated_at)
SELECT s.crm_id, s.name, s.mobile, s.mobile_tail, s.mobile_status, s.carrier, s.branch_id,
  s.manager_id, false, s.opened_on, s.risk_level, s.tags, s.active, 'undetermined', s.row_hash,
  :now, :now
FROM crm_diff d JOIN crm_stage s ON s.line_no = d.line_no
WHERE d.is_new = 1 ORDER BY s.crm_id""",
            now=now,
        )
        # Art 22: a new customer is undetermined; no consent event, nothing changed yet.
    step(READ_SHARE + 22, "applying")
    if new or updated:
        st.sql(
            "DELETE FROM customer_tags WHERE customer_id IN (SELECT customer_id FROM crm_diff "
            "WHERE is_new = 0 AND tags_changed = 1)"
        )
        st.sql(
            "INSERT INTO customer_tags (customer_id, tag) SELECT c.id, t.tag "
            + (
                "FROM crm_diff d JOIN crm_stage s ON s.line_no = d.line_no "
                "CROSS JOIN LATERAL unnest(string_to_array(s.tags, ';')) AS t(tag) "
                if st.pg
                else "FROM crm_diff d JOIN crm_tags t ON t.line_no = d.line_no "
            )
            + "JOIN customers c ON c.crm_id = d.crm_id WHERE d.tags_changed = 1 "
            # In customer order, the foreign-key checks walk the customers' pages once.
            "ORDER BY c.id"
        )
        step(READ_SHARE + 25, "applying")
    for _name, definition in dropped:
        st.conn.exec_driver_sql(definition)
    if dropped:
        # Fresh statistics, or the planner would read a million customers as an empty
        # table until autovacuum comes by (and the customer search would crawl).
        if not st.pg:
            st.conn.exec_driver_sql("PRAGMA analysis_limit = 1000")
        st.conn.exec_driver_sql("ANALYZE customers")
        st.conn.exec_driver_sql("ANALYZE customer_tags")
    if new or updated:
        step(READ_SHARE + 28, "applying")
        _open_checks(st, now)
    step(READ_SHARE + 29, "finishing")
    ok = int(counts.get("ok", 0))
    return {
        "new": new,
        "updated": updated,
        "unchanged": ok - new - updated,
        "skipped": int(counts.get("skipped", 0)),
        "invalid": int(counts.get("invalid", 0)),
        "flagged": int(flagged),
    }


def _bulk(st: Staging, new: int) -> bool:
    """True when the new customers outnumber the existing ones (a first load, a merger):
    then the secondary indexes are dropped and rebuilt, which is several times faster
    than maintaining them row by row. On PostgreSQL this locks the customer table until
    the import commits, which a rare bulk load can afford."""
    if new < current_app.config["CRM_IMPORT_BULK_ROWS"]:
        return False
    existing = st.sql("SELECT COUNT(*) FROM customers").scalar_one()
    return new >= existing


def _drop_secondary_indexes(st: Staging) -> list[tuple[str, str]]:
    """Drop the non-unique indexes of customers and customer_tags; returns (name, DDL)
    to build them again, read from the catalogue so that indexes added later by other
    migrations come back exactly as they were."""
    found: list[tuple[str, str]] = []
    for table in ("customers", "customer_tags"):
        if st.pg:
            found += st.sql(
                "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
                "JOIN pg_class i ON i.oid = x.indexrelid "
                "WHERE x.indrelid = CAST(:t AS regclass) AND NOT x.indisunique "
                "AND NOT x.indisprimary",
                t=table,
            ).all()
        else:
            found += [
                (name, ddl)
                for name, ddl in st.sql(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :t "
                    "AND sql IS NOT NULL",
                    t=table,
                ).all()
                if "UNIQUE" not in ddl.upper()
            ]
    if st.pg and found:
        st.conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '256MB'")
    for name, _ddl in found:
        st.conn.exec_driver_sql(f'DROP INDEX "{name}"')
    return found


def _duplicate_errors(run_id: int, st: Staging) -> None:
    """Row errors for the rows of a duplicated CRM id (in batches: there may be many)."""
    branch_codes = dict(db.session.execute(select(Unit.id, Unit.code)).all())
    usernames = dict(db.session.execute(select(User.id, User.username)).all())
    result = st.sql(
        "SELECT line_no, crm_id, name, mobile, branch_id, manager_id, opened_on, "
        "risk_level, tags, active, raw FROM crm_stage WHERE dup = true ORDER BY line_no"
    )
    message = ROW_ERRORS["duplicate_crm_id"]
    while batch := result.fetchmany(BATCH_ROWS):
        errors = []
        for (
            line,
            crm,
            name,
            mobile,
            branch_id,
            manager_id,
            opened,
            risk,
            tags,
            active,
            raw,
        ) in batch:
            if raw is None:  # a good row: rebuild its line from the checked values
                raw = _raw_line(
                    [
                        crm,
                        name,
                        mobile,
                        branch_codes.get(branch_id, ""),
                        usernames.get(manager_id, ""),
                        str(opened or ""),
                        risk,
                        tags,
                        "active" if active else "closed",
                    ]
                )
            errors.append((run_id, line, crm, "crm_id", "duplicate_crm_id", crm, message, raw))
        st.write("import_row_errors", ERROR_COLUMNS, errors)


def _history(run_id: int, st: Staging, now: datetime) -> None:
    """Customer events for changed customers, before the update overwrites the old values.

    A changed mobile keeps the consent state and is recorded (Art 27(1)); closing and
    re-opening, branch and serving-staff changes are recorded too.
    """
    common = "FROM crm_diff d JOIN crm_stage s ON s.line_no = d.line_no WHERE d.is_new = 0"
    insert = (
        "INSERT INTO customer_events (customer_id, kind, old_value, new_value, "
        "import_run_id, note, at) "
    )
    st.sql(
        insert + "SELECT d.customer_id, 'mobile_changed', d.old_mobile, s.mobile, :run, '', "
        f":now {common} AND d.old_mobile <> s.mobile",
        run=run_id,
        now=now,
    )
    st.sql(
        insert + "SELECT d.customer_id, CASE WHEN s.active = true THEN 'reopened' "
        f"ELSE 'closed' END, '', '', :run, '', :now {common} AND d.old_active <> s.active",
        run=run_id,
        now=now,
    )
    st.sql(
        insert + "SELECT d.customer_id, 'branch_changed', COALESCE(ou.code, ''), nu.code, :run, "
        "'', :now FROM crm_diff d JOIN crm_stage s ON s.line_no = d.line_no "
        "LEFT JOIN units ou ON ou.id = d.old_branch_id JOIN units nu ON nu.id = s.branch_id "
        "WHERE d.is_new = 0 AND d.old_branch_id <> s.branch_id",
        run=run_id,
        now=now,
    )
    st.sql(
        insert + "SELECT d.customer_id, 'manager_changed', COALESCE(ou.username, ''), "
        "nu.username, :run, '', :now FROM crm_diff d JOIN crm_stage s ON s.line_no = d.line_no "
        "LEFT JOIN users ou ON ou.id = d.old_manager_id JOIN users nu ON nu.id = s.manager_id "
        "WHERE d.is_new = 0 AND d.manager_changed = 1 "
        "AND COALESCE(d.old_manager_id, 0) <> s.manager_id",
        run=run_id,
        now=now,
    )


def _close_superseded_checks(run_id: int, st: Staging, now: datetime) -> None:
    """Open verification entries whose number the CRM has since replaced or confirmed valid."""
    note = f"closed by CRM import #{run_id}: the CRM now has a different or valid number"
    match = (
        "FROM crm_diff d JOIN crm_stage s ON s.line_no = d.line_no "
        "WHERE d.is_new = 0 AND mobile_checks.customer_id = d.customer_id "
        "AND mobile_checks.status = 'open' "
        "AND (s.mobile_status = 'valid' OR mobile_checks.mobile <> s.mobile)"
    )
    st.sql(
        "INSERT INTO customer_events (customer_id, kind, old_value, new_value, import_run_id, "
        "note, at) SELECT mobile_checks.customer_id, 'mobile_checked', mobile_checks.mobile, "
        f"mobile_checks.reason, :run, :note, :now FROM mobile_checks WHERE EXISTS (SELECT 1 "
        f"{match})",
        run=run_id,
        note=note,
        now=now,
    )
    st.sql(
        f"UPDATE mobile_checks SET status = 'checked', note = :note, checked_at = :now {match}",
        note=note,
        now=now,
    )
    # A customer who moved branch takes their open entry to the new branch's list.
    st.sql(
        "UPDATE mobile_checks SET branch_id = s.branch_id FROM crm_diff d "
        "JOIN crm_stage s ON s.line_no = d.line_no WHERE d.is_new = 0 "
        "AND mobile_checks.customer_id = d.customer_id AND mobile_checks.status = 'open' "
        "AND mobile_checks.branch_id <> s.branch_id"
    )


def _open_checks(st: Staging, now: datetime) -> None:
    """Put invalid and doubtful numbers of new or changed customers on their branch's
    verification list (R-23), once per customer and number."""
    st.sql(
        """
INSERT INTO mobile_checks (customer_id, branch_id, mobile, reason, status, note, created_at)
SELECT c.id, s.branch_id, s.mobile,
       CASE WHEN s.mobile_status = 'invalid' THEN 'invalid' ELSE 'doubtful' END,
       'open', s.mobile_note, :now
FROM crm_diff d JOIN crm_stage s ON s.line_no = d.line_no JOIN customers c ON c.crm_id = d.crm_id
WHERE s.mobile_status <> 'valid' AND NOT EXISTS (
  SELECT 1 FROM mobile_checks m WHERE m.customer_id = c.id AND m.status = 'open'
  AND m.mobile = s.mobile)""",
        now=now,
    )


# ---------------------------------------------------------------- reports


def row_errors_query(run_id: int):
    return (
        select(ImportRowError)
        .where(ImportRowError.run_id == run_id)
        .order_by(ImportRowError.line_no, ImportRowError.id)
    )


def error_count(run_id: int) -> int:
    return db.session.execute(
        select(func.count(ImportRowError.id)).where(ImportRowError.run_id == run_id)
    ).scalar_one()


def error_csv_rows(run_id: int) -> Iterator[list]:
    """The error rows as CSV cells (line, CRM id, field, problem, value, row), streamed in
    id order a page at a time, so a million error rows never sit in memory at once.

    ``stream_csv`` passes every cell through ``safe_cell``, so a formula the CRM sent
    (``=HYPERLINK(...)``) reaches the spreadsheet as text.
    """
    columns = (
        ImportRowError.id,
        ImportRowError.line_no,
        ImportRowError.crm_id,
        ImportRowError.field,
        ImportRowError.code,
        ImportRowError.value,
        ImportRowError.message,
        ImportRowError.raw,
    )
    last = (0, 0)
    while True:
        batch = db.session.execute(
            select(*columns)
            .where(
                ImportRowError.run_id == run_id,
                tuple_(ImportRowError.line_no, ImportRowError.id) > last,
            )
            .order_by(ImportRowError.line_no, ImportRowError.id)
            .limit(2000)
        ).all()
        if not batch:
            return
        for row in batch:
            yield [
                row.line_no,
                row.crm_id,
                field_label(row.field),
                describe_row_error(row.code, row.field, row.message),
                row.value,
                row.raw,
            ]
        last = (batch[-1].line_no, batch[-1].id)


ERROR_CSV_HEADER = (
    N_("Line"),
    N_("CRM id"),
    N_("Field"),
    N_("Problem"),
    N_("Value"),
    N_("Row as read"),
)


def error_csv_header() -> list[str]:
    return [gettext(h) for h in ERROR_CSV_HEADER]


def report_text(run: ImportRun) -> str:
    """A plain-text report in English (the CLI prints it)."""
    with force_locale("en"):
        lines = [f"CRM import #{run.id} ({run.source}, {run.filename}): {run.status}"]
        if run.status == "failed":
            lines.append(f"  {describe_failure(run)}")
        else:
            lines.append(
                f"  rows {run.rows_processed}: new {run.count_new}, updated {run.count_updated}, "
                f"unchanged {run.count_unchanged}, skipped (no mobile) {run.count_skipped}, "
                f"invalid {run.count_invalid}; mobiles to verify {run.count_flagged}"
            )
            errors = db.session.execute(row_errors_query(run.id).limit(20)).scalars().all()
            for err in errors:
                lines.append(
                    f"  line {err.line_no} [{err.crm_id}] {err.field}: "
                    f"{describe_row_error(err.code, err.field, err.message)} "
                    f"{err.value!r}"
                )
            more = error_count(run.id) - len(errors)
            if more > 0:
                lines.append(f"  ... and {more} more row errors")
    return "\n".join(lines)
