"""Time helpers. The database stores naive UTC; people see Asia/Shanghai."""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

LOCAL_TZ = ZoneInfo("Asia/Shanghai")


def utcnow() -> datetime:
    """The current time as naive UTC, the form every DateTime column holds."""
    return datetime.now(UTC).replace(tzinfo=None)


def to_local(moment: datetime) -> datetime:
    """A naive-UTC timestamp as an aware Asia/Shanghai one."""
    return moment.replace(tzinfo=UTC).astimezone(LOCAL_TZ)


def local_now() -> datetime:
    return datetime.now(LOCAL_TZ)


def local_today() -> date:
    return local_now().date()


def local_to_utc(moment: datetime) -> datetime:
    """An Asia/Shanghai wall-clock time (naive or aware) as naive UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=LOCAL_TZ)
    return moment.astimezone(UTC).replace(tzinfo=None)
