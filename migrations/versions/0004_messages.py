"""messages, approvals, content rules, settings, audience uploads (issue 4)

Revision ID: 0004
Revises: 0003
"""
from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# Default content rules (R-43, Art 10): (pattern, is_regex, match_on, kind, action, note).
# The Market admin edits them on the rules page; these only make a fresh system safe.
DEFAULT_RULES = [
    ("内幕消息|内幕信息|内部消息", True, "text", "illegal", "block", "内幕信息 insider information"),
    ("非法集资", False, "text", "illegal", "block", "非法集资 illegal fund-raising"),
    ("代客理财|代客操盘|代客炒股", True, "text", "illegal", "block", "代客理财 discretionary trading for clients"),
    ("保证收益|稳赚不赔|保本保息|零风险|包赚", True, "text", "illegal", "block",
     "承诺收益 promise of returns (广告法 Art 25)"),
    ("赌博|博彩|六合彩|彩票", True, "text", "illegal", "block", "赌博 gambling"),
    ("(中信|华泰|国泰君安|海通|广发|招商|银河|申万宏源|中金|国信|东方|光大|兴业|平安|安信|长江|方正)证券",
     True, "text", "third_party_ad", "block", "其他券商名称 another firm's name"),
    ("同花顺|东方财富网|雪球|支付宝|微信公众号", True, "text", "third_party_ad", "warn",
     "第三方平台 third-party platform"),
    ("", False, "links", "third_party_ad", "block", "外部链接 link to a domain other than the company's own"),
    ("保本|稳赚|收益率|翻倍|涨停|牛股|必涨|抄底|推荐买入", True, "text", "advisory_wording", "warn",
     "咨询用语 advisory wording in a notice"),
    ("回T退订|退订回T|回复T退订", True, "text", "other", "warn",
     "退订语 the opt-out line is appended automatically"),
]


def upgrade():
    op.create_table('messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=True),
    sa.Column('category', sa.String(length=12), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('audience', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('urgent', sa.Boolean(), nullable=False),
    sa.Column('schedule_at', sa.DateTime(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('route', sa.String(length=40), nullable=False),
    sa.Column('route_article', sa.String(length=20), nullable=False),
    sa.Column('submitted_at', sa.DateTime(), nullable=True),
    sa.Column('approved_at', sa.DateTime(), nullable=True),
    sa.Column('approved_by_id', sa.Integer(), nullable=True),
    sa.Column('approved_version', sa.Integer(), nullable=True),
    sa.Column('send_started_at', sa.DateTime(), nullable=True),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('route_unit_id', sa.Integer(), nullable=True),
    sa.Column('route_fallback', sa.Boolean(), nullable=False),
    sa.Column('segments', sa.SmallInteger(), nullable=False),
    sa.Column('audience_summary', sa.Text(), nullable=False),
    sa.Column('rule_warnings', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['approved_by_id'], ['users.id'], name=op.f('fk_messages_approved_by_id_users')),
    sa.ForeignKeyConstraint(['author_id'], ['users.id'], name=op.f('fk_messages_author_id_users')),
    sa.ForeignKeyConstraint(['unit_id'], ['units.id'], name=op.f('fk_messages_unit_id_units')),
    sa.ForeignKeyConstraint(['route_unit_id'], ['units.id'], name=op.f('fk_messages_route_unit_id_units')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_messages'))
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_messages_author_id'), ['author_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_status'), ['status'], unique=False)
        batch_op.create_index('ix_messages_status_schedule', ['status', 'schedule_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_unit_id'), ['unit_id'], unique=False)
        batch_op.create_index('ix_messages_route', ['status', 'route', 'route_unit_id'], unique=False)

    op.create_table('message_approvals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('decision', sa.String(length=10), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('route', sa.String(length=40), nullable=False),
    sa.Column('route_article', sa.String(length=20), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_message_approvals_actor_id_users')),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_message_approvals_message_id_messages'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_message_approvals'))
    )
    with op.batch_alter_table('message_approvals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_message_approvals_message_id'), ['message_id'], unique=False)

    rules = op.create_table('content_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pattern', sa.String(length=200), nullable=False),
    sa.Column('is_regex', sa.Boolean(), nullable=False),
    sa.Column('match_on', sa.String(length=10), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('action', sa.String(length=10), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('note', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('updated_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['updated_by_id'], ['users.id'], name=op.f('fk_content_rules_updated_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_content_rules'))
    )

    op.create_table('message_settings',
    sa.Column('key', sa.String(length=40), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('updated_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['updated_by_id'], ['users.id'], name=op.f('fk_message_settings_updated_by_id_users')),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_message_settings'))
    )

    op.create_table('audience_uploads',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('filename', sa.String(length=200), nullable=False),
    sa.Column('total_lines', sa.Integer(), nullable=False),
    sa.Column('good_count', sa.Integer(), nullable=False),
    sa.Column('duplicate_count', sa.Integer(), nullable=False),
    sa.Column('bad_count', sa.Integer(), nullable=False),
    sa.Column('bad_lines', sa.Text(), nullable=False),
    sa.Column('confirmed', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['author_id'], ['users.id'], name=op.f('fk_audience_uploads_author_id_users')),
    sa.ForeignKeyConstraint(['unit_id'], ['units.id'], name=op.f('fk_audience_uploads_unit_id_units')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audience_uploads'))
    )
    with op.batch_alter_table('audience_uploads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audience_uploads_author_id'), ['author_id'], unique=False)

    op.create_table('audience_upload_rows',
    sa.Column('upload_id', sa.Integer(), nullable=False),
    sa.Column('value', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['upload_id'], ['audience_uploads.id'], name=op.f('fk_audience_upload_rows_upload_id_audience_uploads'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('upload_id', 'value', name=op.f('pk_audience_upload_rows'))
    )

    # Staff mobiles, for internal notices to staff by unit.
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mobile', sa.String(length=32), nullable=False, server_default=''))

    now = datetime.now(timezone.utc).replace(tzinfo=None)
    op.bulk_insert(rules, [
        {"pattern": p, "is_regex": r, "match_on": c, "kind": k, "action": a, "active": True,
         "note": n, "created_at": now, "updated_at": now, "updated_by_id": None}
        for p, r, c, k, a, n in DEFAULT_RULES
    ])


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('mobile')
    op.drop_table('audience_upload_rows')
    with op.batch_alter_table('audience_uploads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audience_uploads_author_id'))
    op.drop_table('audience_uploads')
    op.drop_table('message_settings')
    op.drop_table('content_rules')
    with op.batch_alter_table('message_approvals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_message_approvals_message_id'))
    op.drop_table('message_approvals')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_route')
        batch_op.drop_index(batch_op.f('ix_messages_unit_id'))
        batch_op.drop_index('ix_messages_status_schedule')
        batch_op.drop_index(batch_op.f('ix_messages_status'))
        batch_op.drop_index(batch_op.f('ix_messages_author_id'))

    op.drop_table('messages')
