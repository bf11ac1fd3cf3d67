"""Content rules (R-43, Art 10): what a message may not say, and what the approver should see.

A rule is a word or a regular expression, or the built-in "links" check (every link whose
domain is not one of the company's own). A matching ``block`` rule stops submission and
approval and names itself; a matching ``warn`` rule is shown to the author as they type
and to the approver. Rules of kind ``advisory_wording`` (保本, 收益率 ...) apply to
notices, account and internal messages only: such wording is the business of advisory
messages, and in a notice it means the author strayed into advice (Art 13).

``check`` is pure (rules and domains are passed in); ``check_text`` loads them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from flask_babel import gettext as _
from sqlalchemy import select

from app.extensions import db
from app.models import ContentRule, User
from app.models.messages import RULE_ACTIONS, RULE_KINDS, RULE_MATCH_ON
from app.services import audit, message_settings
from app.services.errors import NotFound, ValidationError
from app.timeutil import utcnow

ADVISORY_CATEGORIES = ("advisory", "product")
PATTERN_MAX = 200

# A link: a scheme or "www." before a host, or a bare host whose top-level domain is one
# people actually use in links (so "Mr.Wang" or "3.5" are not taken for links).
# The authority part is ASCII only, so Chinese text glued to a link is not taken for it;
# user information ("http://hxzq.com.cn@evil.example") is dropped before the host is judged.
_SCHEMED = re.compile(r"(?:[a-z][a-z0-9+.-]*://|www\.)([a-z0-9.:@%_~!$&'()*+,;=-]+)", re.IGNORECASE)
_BARE_TLDS = "com|cn|net|org|top|xyz|info|cc|io|vip|shop|club|site|online|link|ltd|tech|biz|hk|icu"
_BARE = re.compile(
    r"(?<![a-z0-9.@-])((?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+(?:" + _BARE_TLDS + r"))(?![a-z0-9-])",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class RuleSpec:
    """What ``check`` needs of a rule, detached from the database."""

    id: int
    pattern: str
    is_regex: bool
    match_on: str
    kind: str
    action: str
    note: str

    @property
    def label(self) -> str:
        return self.note or self.pattern


@dataclass(frozen=True)
class RuleMatch:
    rule_id: int
    label: str
    kind: str
    action: str
    found: str  # the text that matched

    def as_dict(self) -> dict:
        return {
            "rule_id": self.rule_id,
            "label": self.label,
            "kind": self.kind,
            "action": self.action,
            "found": self.found,
        }


@dataclass
class CheckResult:
    blocks: list[RuleMatch] = field(default_factory=list)
    warnings: list[RuleMatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.blocks


def links_in(text: str) -> list[tuple[str, str]]:
    """(as written, host) of every link-like thing in ``text``."""
    found, spans = [], []
    for m in _SCHEMED.finditer(text or ""):
        host = m.group(1).rsplit("@", 1)[-1].split(":", 1)[0].strip(".").lower()
        found.append((m.group(0), host))
        spans.append(m.span())
    for m in _BARE.finditer(text or ""):
        if any(a <= m.start() < b for a, b in spans):
            continue
        found.append((m.group(0), m.group(1).lower()))
    return found


def _host_allowed(host: str, domains: list[str]) -> bool:
    host = host.split(":", 1)[0].strip(".").lower()
    return any(host == d or host.endswith("." + d) for d in domains)


def _compile(spec: RuleSpec) -> re.Pattern:
    source = spec.pattern if spec.is_regex else re.escape(spec.pattern)
    return re.compile(source, re.IGNORECASE)


def check(text: str, category: str, rules: list[RuleSpec], domains: list[str]) -> CheckResult:
    """Every active rule matched by ``text`` in ``category``, split into blocks and warnings."""
    result = CheckResult()
    for spec in rules:
        if spec.kind == "advisory_wording" and category in ADVISORY_CATEGORIES:
            continue
        found = ""
        if spec.match_on == "links":
            for written, host in links_in(text):
                if not _host_allowed(host, domains):
                    found = written
                    break
        elif spec.pattern:
            try:
                m = _compile(spec).search(text or "")
            except re.error:
                continue  # saved patterns are validated; never let one break drafting
            found = m.group(0) if m else ""
        if found:
            match = RuleMatch(spec.id, spec.label, spec.kind, spec.action, found)
            (result.blocks if spec.action == "block" else result.warnings).append(match)
    return result


def active_rules() -> list[RuleSpec]:
    rows = db.session.execute(
        select(ContentRule).where(ContentRule.active.is_(True)).order_by(ContentRule.id)
    ).scalars()
    return [
        RuleSpec(r.id, r.pattern, r.is_regex, r.match_on, r.kind, r.action, r.note) for r in rows
    ]


def check_text(text: str, category: str) -> CheckResult:
    """``check`` against the active rules and the company domains in the database."""
    return check(text, category, active_rules(), message_settings.get("link_domains"))


def block_message(result: CheckResult) -> str:
    """The error an author or approver reads when a block rule matched: it names the rule."""
    names = "; ".join(f"{m.label} ({m.found})" for m in result.blocks)
    return _("The text breaks a content rule and cannot go out: %(rules)s.", rules=names)


# ------------------------------------------------------------------ administration


def _validated(values: dict) -> dict:
    pattern = (values.get("pattern") or "").strip()
    match_on = values.get("match_on") or "text"
    kind, action = values.get("kind"), values.get("action")
    is_regex = bool(values.get("is_regex"))
    note = (values.get("note") or "").strip()
    if match_on not in RULE_MATCH_ON:
        raise ValidationError(_("Unknown kind of check."))
    if kind not in RULE_KINDS:
        raise ValidationError(_("Choose the kind of content."))
    if action not in RULE_ACTIONS:
        raise ValidationError(_("Choose block or warn."))
    if len(note) > 200:
        raise ValidationError(_("The name is at most 200 characters."))
    if match_on == "text":
        if not pattern:
            raise ValidationError(_("A word or pattern is required."))
        if len(pattern) > PATTERN_MAX:
            raise ValidationError(_("A pattern is at most %(n)s characters.", n=PATTERN_MAX))
        if is_regex:
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValidationError(
                    _("The regular expression is not valid: %(e)s.", e=str(exc))
                ) from exc
            if compiled.search(""):
                raise ValidationError(
                    _("The pattern matches empty text, so it would match every message.")
                )
    else:
        pattern, is_regex = "", False
    return {
        "pattern": pattern,
        "is_regex": is_regex,
        "match_on": match_on,
        "kind": kind,
        "action": action,
        "note": note,
    }


def create_rule(values: dict, *, actor: User) -> ContentRule:
    """Add a rule; raises ``ValidationError`` for a missing or broken pattern. The caller commits."""
    clean = _validated(values)
    now = utcnow()
    rule = ContentRule(**clean, active=True, created_at=now, updated_at=now, updated_by_id=actor.id)
    db.session.add(rule)
    db.session.flush()
    audit.record("content_rule.created", actor=actor, target=rule, details=clean)
    return rule


def update_rule(rule_id: int, values: dict, *, actor: User) -> ContentRule:
    rule = db.session.get(ContentRule, rule_id)
    if rule is None:
        raise NotFound()
    clean = _validated(values)
    before = {k: getattr(rule, k) for k in clean}
    for key, value in clean.items():
        setattr(rule, key, value)
    rule.updated_at, rule.updated_by_id = utcnow(), actor.id
    audit.record(
        "content_rule.changed", actor=actor, target=rule, details={"before": before, "after": clean}
    )
    return rule


def set_active(rule_id: int, active: bool, *, actor: User) -> ContentRule:
    rule = db.session.get(ContentRule, rule_id)
    if rule is None:
        raise NotFound()
    if rule.active != active:
        rule.active = active
        rule.updated_at, rule.updated_by_id = utcnow(), actor.id
        audit.record(
            "content_rule.activated" if active else "content_rule.deactivated",
            actor=actor,
            target=rule,
            details={"note": rule.note, "pattern": rule.pattern},
        )
    return rule
