"""Jobs of the messages area: keeping the frequency cap's list of capped customers (R-46)."""

from __future__ import annotations

from app.services import frequency_caps


def recount_stale_caps() -> dict[str, int]:
    """Recount the categories whose capped list was made with other cap settings, or
    never (scheduler, every minute; nothing to do on most ticks)."""
    return frequency_caps.recount_all(only_stale=True)


def recount_caps() -> dict[str, int]:
    """Recount every capped category from its sends (scheduler, daily): carriers' late
    failure reports free the customers' slots, and days gone by drop out."""
    return frequency_caps.recount_all()
