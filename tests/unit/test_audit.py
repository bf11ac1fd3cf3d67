"""The audit log: one call records a change; the hash chain shows tampering (R-80)."""

import json

import pytest
from sqlalchemy import select, text

from app.extensions import db
from app.models import AuditLog
from app.services import audit


def _drop_append_only_triggers():
    """What a DBA with write access could do: the chain must still tell."""
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
    else:
        db.session.execute(text("DROP TRIGGER audit_log_no_update"))
        db.session.execute(text("DROP TRIGGER audit_log_no_delete"))
    db.session.commit()


def test_record_links_each_row_to_the_previous(app, user, db_backend):
    admin = user("admin")
    first = audit.record("test.first", actor=admin, target=admin, details={"a": 1})
    second = audit.record("test.second", actor=None, target_type="thing", target_id=7)
    db.session.commit()
    assert second.prev_hash == first.hash
    assert first.hash == audit.compute_hash(first.prev_hash, first)
    assert second.actor_name == "system"
    assert json.loads(first.details) == {"a": 1}
    assert audit.verify_chain().ok


def test_seeded_chain_verifies(app, db_backend):
    report = audit.verify_chain()
    assert report.ok
    assert report.checked == db.session.execute(select(db.func.count(AuditLog.id))).scalar()
    assert report.checked > 10  # the demo seed wrote units and users


def test_database_refuses_update_and_delete(app, db_backend):
    with pytest.raises(Exception, match="append-only"):
        db.session.execute(text("UPDATE audit_log SET action = 'forged' WHERE id = 1"))
        db.session.commit()
    db.session.rollback()
    with pytest.raises(Exception, match="append-only"):
        db.session.execute(text("DELETE FROM audit_log WHERE id = 2"))
        db.session.commit()
    db.session.rollback()


def test_a_changed_row_is_named(app, db_backend):
    _drop_append_only_triggers()
    db.session.execute(text("UPDATE audit_log SET details = '{\"forged\": true}' WHERE id = 5"))
    db.session.commit()
    report = audit.verify_chain()
    assert not report.ok
    assert report.broken_id == 5
    assert report.reason == "content"
    assert report.checked == 4


def test_a_deleted_row_breaks_the_link(app, db_backend):
    _drop_append_only_triggers()
    db.session.execute(text("DELETE FROM audit_log WHERE id = 3"))
    db.session.commit()
    report = audit.verify_chain()
    assert report.broken_id == 4
    assert report.reason == "link"


def test_cli_verify_exit_codes(app, runner, db_backend):
    ok = runner.invoke(args=["audit", "verify"])
    assert ok.exit_code == 0
    assert "OK" in ok.output
    _drop_append_only_triggers()
    db.session.execute(text("UPDATE audit_log SET actor_name = 'mallory' WHERE id = 7"))
    db.session.commit()
    broken = runner.invoke(args=["audit", "verify"])
    assert broken.exit_code == 1
    assert "row 7" in broken.output


def test_search_filters(app, user, db_backend):
    admin = user("admin")
    audit.record("probe.one", actor=admin, target_type="customer", target_id=42)
    audit.record("probe.two", actor=user("bj_head"), target_type="customer", target_id=43)
    db.session.commit()
    rows = db.session.execute(audit.search(action="probe.")).scalars().all()
    assert [r.action for r in rows] == ["probe.two", "probe.one"]  # newest first
    rows = db.session.execute(audit.search(actor="admin", action="probe.")).scalars().all()
    assert [r.target_id for r in rows] == ["42"]
