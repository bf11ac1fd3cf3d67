"""recipients, gateway events, replies (issue 5)

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table('send_runs',
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('gateway', sa.String(length=12), nullable=False),
    sa.Column('sender', sa.String(length=21), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('segments', sa.SmallInteger(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('eligible', sa.Integer(), nullable=False),
    sa.Column('suppressed', sa.Integer(), nullable=False),
    sa.Column('batches', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('built_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_send_runs_message_id_messages')),
    sa.PrimaryKeyConstraint('message_id', name=op.f('pk_send_runs'))
    )
    with op.batch_alter_table('send_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_send_runs_state'), ['state'], unique=False)

    op.create_table('send_batches',
    sa.Column('id', BigId, nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('batch_no', sa.Integer(), nullable=False),
    sa.Column('first_id', sa.BigInteger(), nullable=False),
    sa.Column('last_id', sa.BigInteger(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('claim_token', sa.String(length=32), nullable=False),
    sa.Column('claims', sa.SmallInteger(), nullable=False),
    sa.Column('inflight_lo', sa.BigInteger(), nullable=True),
    sa.Column('inflight_hi', sa.BigInteger(), nullable=True),
    sa.Column('enqueued_at', sa.DateTime(), nullable=True),
    sa.Column('not_before', sa.DateTime(), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(), nullable=True),
    sa.Column('done_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_send_batches'))
    )
    with op.batch_alter_table('send_batches', schema=None) as batch_op:
        batch_op.create_index('uq_send_batches_message_batch', ['message_id', 'batch_no'], unique=True)
        batch_op.create_index('ix_send_batches_status', ['status', 'enqueued_at'], unique=False)

    # No foreign keys on purpose (see app/models/sending.py): the hot per-recipient table.
    op.create_table('recipients',
    sa.Column('id', BigId, nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('unit_id', sa.Integer(), nullable=True),
    sa.Column('mobile', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=False),
    sa.Column('segments', sa.SmallInteger(), nullable=False),
    sa.Column('cost', sa.Numeric(precision=12, scale=4), nullable=False),
    sa.Column('attempts', sa.SmallInteger(), nullable=False),
    sa.Column('batch_no', sa.Integer(), nullable=True),
    sa.Column('gateway_ref', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('submitted_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recipients'))
    )
    with op.batch_alter_table('recipients', schema=None) as batch_op:
        batch_op.create_index('ix_recipients_customer', ['customer_id', 'created_at'], unique=False)
        batch_op.create_index('ix_recipients_message_status', ['message_id', 'status', 'id'], unique=False)

    op.create_table('delivery_reports',
    sa.Column('id', BigId, nullable=False),
    sa.Column('dedupe_key', sa.String(length=120), nullable=False),
    sa.Column('recipient_id', sa.BigInteger(), nullable=True),
    sa.Column('gateway', sa.String(length=12), nullable=False),
    sa.Column('outcome', sa.String(length=10), nullable=False),
    sa.Column('code', sa.String(length=20), nullable=False),
    sa.Column('detail', sa.String(length=500), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery_reports')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_delivery_reports_dedupe_key'))
    )
    with op.batch_alter_table('delivery_reports', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_delivery_reports_received_at'), ['received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_delivery_reports_recipient_id'), ['recipient_id'], unique=False)

    op.create_table('inbound_replies',
    sa.Column('id', BigId, nullable=False),
    sa.Column('dedupe_key', sa.String(length=120), nullable=False),
    sa.Column('gateway', sa.String(length=12), nullable=False),
    sa.Column('mobile', sa.String(length=32), nullable=False),
    sa.Column('to_number', sa.String(length=32), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('intent', sa.String(length=8), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('outcome', sa.String(length=200), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=True),
    sa.Column('customer_id', sa.Integer(), nullable=True),
    sa.Column('customers_matched', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=True),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('handled_by_id', sa.Integer(), nullable=True),
    sa.Column('handled_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['handled_by_id'], ['users.id'], name=op.f('fk_inbound_replies_handled_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_replies')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_inbound_replies_dedupe_key'))
    )
    with op.batch_alter_table('inbound_replies', schema=None) as batch_op:
        batch_op.create_index('ix_inbound_replies_inbox', ['status', 'unit_id', 'received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_inbound_replies_mobile'), ['mobile'], unique=False)

    op.create_table('reply_notes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reply_id', sa.BigInteger(), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['author_id'], ['users.id'], name=op.f('fk_reply_notes_author_id_users')),
    sa.ForeignKeyConstraint(['reply_id'], ['inbound_replies.id'], name=op.f('fk_reply_notes_reply_id_inbound_replies')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reply_notes'))
    )
    with op.batch_alter_table('reply_notes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reply_notes_reply_id'), ['reply_id'], unique=False)

    op.create_table('simulated_sms',
    sa.Column('id', BigId, nullable=False),
    sa.Column('recipient_id', sa.BigInteger(), nullable=False),
    sa.Column('mobile', sa.String(length=32), nullable=False),
    sa.Column('sender', sa.String(length=21), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('reported_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_simulated_sms'))
    )
    with op.batch_alter_table('simulated_sms', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_simulated_sms_mobile'), ['mobile'], unique=False)
        batch_op.create_index(batch_op.f('ix_simulated_sms_recipient_id'), ['recipient_id'], unique=False)


def downgrade():
    op.drop_table('simulated_sms')
    op.drop_table('reply_notes')
    op.drop_table('inbound_replies')
    op.drop_table('delivery_reports')
    op.drop_table('recipients')
    op.drop_table('send_batches')
    op.drop_table('send_runs')
