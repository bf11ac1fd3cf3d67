"""Message settings: frequency caps, quiet hours, rates, opt-out line, company domains.

Each setting is one JSON value in ``message_settings``; a key without a row takes the
default below, so a fresh system behaves sensibly (R-46, R-49, R-43, R-44). The Market
admin changes them on the settings page (``save``); the drafting page, the audience
preview and the sending area read them through ``get`` and the helpers here, so the
preview and the send apply the same caps and quiet hours.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal, InvalidOperation

from flask_babel import gettext as _

from app.extensions import db
from app.models import MessageSetting, User
from app.models.messages import CATEGORIES
from app.services import audit
from app.services.errors import ValidationError
from app.timeutil import LOCAL_TZ, local_to_utc, to_local, utcnow

SIGNATURE = "【和兴证券】"
CARRIERS = ("china_mobile", "china_unicom", "china_telecom")

DEFAULTS: dict[str, object] = {
    # Per category: at most ``day`` messages per customer per calendar day and ``week`` per
    # seven days (Art 12). A category without an entry, or with 0, is exempt.
    "caps": {
        "market": {"day": 2, "week": 5},
        "advisory": {"day": 2, "week": 5},
        "product": {"day": 2, "week": 5},
    },
    # Asia/Shanghai wall-clock; non-urgent messages due inside are held until ``end``.
    "quiet_hours": {"start": "21:00", "end": "08:00"},
    # Price per SMS segment in yuan, per carrier; "default" for numbers of other carriers.
    "rates": {
        "china_mobile": "0.05",
        "china_unicom": "0.05",
        "china_telecom": "0.05",
        "default": "0.05",
    },
    "opt_out_line": "回T退订",
    # Links may only point here (and to sub-domains): the "links" content rule.
    "link_domains": ["hxzq.com.cn"],
}

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_DOMAIN = re.compile(r"^(?=.{3,100}$)([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}$")


def get(key: str):
    """The setting's current value (the stored JSON, else the default)."""
    row = db.session.get(MessageSetting, key)
    if row is None:
        return json.loads(json.dumps(DEFAULTS[key]))
    return json.loads(row.value)


def all_settings() -> dict:
    return {key: get(key) for key in DEFAULTS}


def _clean(key: str, value):
    """Validate one setting; returns the value to store or raises ``ValidationError``."""
    if key == "caps":
        out = {}
        for category, cap in (value or {}).items():
            if category not in CATEGORIES:
                raise ValidationError(_("Unknown category %(c)s.", c=category))
            try:
                day, week = int(cap.get("day") or 0), int(cap.get("week") or 0)
            except (TypeError, ValueError) as exc:
                raise ValidationError(_("Caps are whole numbers.")) from exc
            if day < 0 or week < 0 or day > 100 or week > 700:
                raise ValidationError(_("Caps lie between 0 and 100 a day, 0 and 700 a week."))
            if day and week and week < day:
                raise ValidationError(_("The weekly cap cannot be lower than the daily cap."))
            if day or week:
                out[category] = {"day": day, "week": week}
        return out
    if key == "quiet_hours":
        start, end = (value or {}).get("start", ""), (value or {}).get("end", "")
        if not start and not end:
            return {"start": "", "end": ""}  # no quiet hours
        if not (_HHMM.match(start or "") and _HHMM.match(end or "")) or start == end:
            raise ValidationError(_("Quiet hours are two different times written HH:MM."))
        return {"start": start, "end": end}
    if key == "rates":
        out = {}
        for carrier, price in (value or {}).items():
            try:
                amount = Decimal(str(price).strip())
            except InvalidOperation as exc:
                raise ValidationError(_("A rate is a price in yuan, such as 0.05.")) from exc
            if amount < 0 or amount > 10 or amount.as_tuple().exponent < -4:
                raise ValidationError(_("A rate is a price in yuan, such as 0.05."))
            out[carrier] = str(amount)
        if "default" not in out:
            raise ValidationError(_("A default rate is required."))
        return out
    if key == "opt_out_line":
        text = (value or "").strip()
        if not text or len(text) > 20:
            raise ValidationError(_("The opt-out line is required and at most 20 characters."))
        return text
    if key == "link_domains":
        domains = [d.strip().lower() for d in value or [] if d and d.strip()]
        for d in domains:
            if not _DOMAIN.match(d):
                raise ValidationError(_("%(d)s is not a domain name.", d=d))
        if not domains:
            raise ValidationError(_("Name at least one company domain."))
        return sorted(set(domains))
    raise ValidationError(_("Unknown setting %(k)s.", k=key))


def save(values: dict, *, actor: User) -> list[str]:
    """Validate and store settings; returns the keys that changed. Nothing is stored
    when any value is invalid. Writes one audit row; the caller commits."""
    cleaned = {key: _clean(key, value) for key, value in values.items()}
    changed = []
    now = utcnow()
    for key, value in cleaned.items():
        if value == get(key):
            continue
        row = db.session.get(MessageSetting, key)
        if row is None:
            row = MessageSetting(key=key)
            db.session.add(row)
        row.value = json.dumps(value, ensure_ascii=False)
        row.updated_at = now
        row.updated_by_id = actor.id
        changed.append(key)
    if changed:
        audit.record(
            "message_settings.changed",
            actor=actor,
            target_type="message_settings",
            details={k: cleaned[k] for k in changed},
        )
    return changed


# ------------------------------------------------------------------ caps and quiet hours


@dataclass(frozen=True)
class Cap:
    day: int  # 0 = no daily cap
    week: int  # 0 = no weekly cap


def cap_for(category: str, caps: dict | None = None) -> Cap | None:
    """The frequency cap of a category, or None when it is exempt."""
    caps = get("caps") if caps is None else caps
    entry = caps.get(category)
    if not entry or not (entry.get("day") or entry.get("week")):
        return None
    return Cap(int(entry.get("day") or 0), int(entry.get("week") or 0))


def cap_windows(send_at: datetime) -> tuple[datetime, datetime]:
    """(start of the send's calendar day, start of the 7-day window), naive UTC.

    Days are Asia/Shanghai calendar days: "2 a day" means 2 between local midnights, and
    the week is the send's day and the six before it.
    """
    local = to_local(send_at)
    day_start = datetime.combine(local.date(), time(0), tzinfo=LOCAL_TZ)
    return local_to_utc(day_start), local_to_utc(day_start - timedelta(days=6))


def _hhmm(text: str) -> time:
    hours, minutes = (int(x) for x in text.split(":"))
    return time(hours, minutes)


def quiet_hold(
    send_at: datetime, urgent: bool = False, quiet: dict | None = None
) -> datetime | None:
    """When ``send_at`` (naive UTC) falls inside quiet hours and the message is not urgent,
    the naive-UTC moment it may go out (the end of the quiet period); else None (R-46)."""
    quiet = get("quiet_hours") if quiet is None else quiet
    if urgent or not quiet.get("start") or not quiet.get("end"):
        return None
    start, end = _hhmm(quiet["start"]), _hhmm(quiet["end"])
    local = to_local(send_at)
    now_t = local.time()
    # A period that wraps midnight (21:00-08:00) is inside when after start OR before end.
    inside = start <= now_t < end if start < end else (now_t >= start or now_t < end)
    if not inside:
        return None
    release_day = local.date()
    if start > end and now_t >= start:
        release_day += timedelta(days=1)
    release = datetime.combine(release_day, end, tzinfo=LOCAL_TZ)
    return local_to_utc(release)


def rate_for(carrier: str, rates: dict | None = None) -> Decimal:
    rates = get("rates") if rates is None else rates
    return Decimal(str(rates.get(carrier) or rates.get("default") or "0"))


def estimate_cost(segments: int, by_carrier: dict[str, int], rates: dict | None = None) -> Decimal:
    """Segments x recipients x the carrier's per-segment rate, summed over carriers (R-44)."""
    rates = get("rates") if rates is None else rates
    total = sum((rate_for(c, rates) * n for c, n in by_carrier.items()), Decimal("0"))
    return (total * segments).quantize(Decimal("0.01"))
