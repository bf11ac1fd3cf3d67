"""API clients, approved templates, idempotency keys (issue 6, items 5-7)

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('message_templates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('category', sa.String(length=12), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('urgent', sa.Boolean(), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('route', sa.String(length=40), nullable=False),
    sa.Column('route_article', sa.String(length=20), nullable=False),
    sa.Column('route_unit_id', sa.Integer(), nullable=True),
    sa.Column('route_fallback', sa.Boolean(), nullable=False),
    sa.Column('segments', sa.SmallInteger(), nullable=False),
    sa.Column('rule_warnings', sa.Text(), nullable=False),
    sa.Column('submitted_at', sa.DateTime(), nullable=True),
    sa.Column('approved_at', sa.DateTime(), nullable=True),
    sa.Column('approved_by_id', sa.Integer(), nullable=True),
    sa.Column('approved_version', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['approved_by_id'], ['users.id'], name=op.f('fk_message_templates_approved_by_id_users')),
    sa.ForeignKeyConstraint(['author_id'], ['users.id'], name=op.f('fk_message_templates_author_id_users')),
    sa.ForeignKeyConstraint(['route_unit_id'], ['units.id'], name=op.f('fk_message_templates_route_unit_id_units')),
    sa.ForeignKeyConstraint(['unit_id'], ['units.id'], name=op.f('fk_message_templates_unit_id_units')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_message_templates'))
    )
    with op.batch_alter_table('message_templates', schema=None) as batch_op:
        batch_op.create_index('ix_message_templates_route', ['status', 'route', 'route_unit_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_message_templates_unit_id'), ['unit_id'], unique=False)

    op.create_table('api_clients',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('access_request_id', sa.Integer(), nullable=True),
    sa.Column('key_prefix', sa.String(length=20), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('rate_limit_per_minute', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('rotated_at', sa.DateTime(), nullable=True),
    sa.Column('rotated_by_id', sa.Integer(), nullable=True),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.Column('revoked_by_id', sa.Integer(), nullable=True),
    sa.Column('revoke_reason', sa.Text(), nullable=False),
    sa.Column('last_used_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['access_request_id'], ['access_requests.id'], name=op.f('fk_api_clients_access_request_id_access_requests')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_api_clients_created_by_id_users')),
    sa.ForeignKeyConstraint(['revoked_by_id'], ['users.id'], name=op.f('fk_api_clients_revoked_by_id_users')),
    sa.ForeignKeyConstraint(['rotated_by_id'], ['users.id'], name=op.f('fk_api_clients_rotated_by_id_users')),
    sa.ForeignKeyConstraint(['unit_id'], ['units.id'], name=op.f('fk_api_clients_unit_id_units')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_api_clients_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_clients')),
    sa.UniqueConstraint('key_prefix', name=op.f('uq_api_clients_key_prefix')),
    sa.UniqueConstraint('user_id', name=op.f('uq_api_clients_user_id'))
    )
    with op.batch_alter_table('api_clients', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_clients_unit_id'), ['unit_id'], unique=False)

    op.create_table('api_recipients',
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('ref_kind', sa.String(length=8), nullable=False),
    sa.Column('ref', sa.String(length=32), nullable=False),
    sa.Column('vars', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_api_recipients_message_id_messages'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('message_id', 'customer_id', name=op.f('pk_api_recipients'))
    )
    with op.batch_alter_table('api_recipients', schema=None) as batch_op:
        batch_op.create_index('ix_api_recipients_position', ['message_id', 'position'], unique=False)

    op.create_table('template_approvals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('template_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('decision', sa.String(length=10), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('route', sa.String(length=40), nullable=False),
    sa.Column('route_article', sa.String(length=20), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_template_approvals_actor_id_users')),
    sa.ForeignKeyConstraint(['template_id'], ['message_templates.id'], name=op.f('fk_template_approvals_template_id_message_templates'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_template_approvals'))
    )
    with op.batch_alter_table('template_approvals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_template_approvals_template_id'), ['template_id'], unique=False)

    op.create_table('api_client_templates',
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('template_id', sa.Integer(), nullable=False),
    sa.Column('bound_at', sa.DateTime(), nullable=False),
    sa.Column('bound_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['bound_by_id'], ['users.id'], name=op.f('fk_api_client_templates_bound_by_id_users')),
    sa.ForeignKeyConstraint(['client_id'], ['api_clients.id'], name=op.f('fk_api_client_templates_client_id_api_clients'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['template_id'], ['message_templates.id'], name=op.f('fk_api_client_templates_template_id_message_templates'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('client_id', 'template_id', name=op.f('pk_api_client_templates'))
    )
    with op.batch_alter_table('api_client_templates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_client_templates_template_id'), ['template_id'], unique=False)

    op.create_table('api_idempotency_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('response_status', sa.SmallInteger(), nullable=False),
    sa.Column('response_body', sa.Text(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['api_clients.id'], name=op.f('fk_api_idempotency_keys_client_id_api_clients'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_idempotency_keys')),
    sa.UniqueConstraint('client_id', 'key', name='uq_api_idempotency_keys_client_key')
    )
    with op.batch_alter_table('api_idempotency_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_idempotency_keys_created_at'), ['created_at'], unique=False)

    op.create_table('api_messages',
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('template_id', sa.Integer(), nullable=False),
    sa.Column('template_version', sa.Integer(), nullable=False),
    sa.Column('listed', sa.Integer(), nullable=False),
    sa.Column('customers', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['api_clients.id'], name=op.f('fk_api_messages_client_id_api_clients')),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_api_messages_message_id_messages')),
    sa.ForeignKeyConstraint(['template_id'], ['message_templates.id'], name=op.f('fk_api_messages_template_id_message_templates')),
    sa.PrimaryKeyConstraint('message_id', name=op.f('pk_api_messages'))
    )
    with op.batch_alter_table('api_messages', schema=None) as batch_op:
        batch_op.create_index('ix_api_messages_client', ['client_id', 'message_id'], unique=False)


def downgrade():
    with op.batch_alter_table('api_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_api_messages_client')

    op.drop_table('api_messages')
    with op.batch_alter_table('api_idempotency_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_idempotency_keys_created_at'))

    op.drop_table('api_idempotency_keys')
    with op.batch_alter_table('api_client_templates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_client_templates_template_id'))

    op.drop_table('api_client_templates')
    with op.batch_alter_table('template_approvals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_template_approvals_template_id'))

    op.drop_table('template_approvals')
    with op.batch_alter_table('api_recipients', schema=None) as batch_op:
        batch_op.drop_index('ix_api_recipients_position')

    op.drop_table('api_recipients')
    with op.batch_alter_table('api_clients', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_clients_unit_id'))

    op.drop_table('api_clients')
    with op.batch_alter_table('message_templates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_message_templates_unit_id'))
        batch_op.drop_index('ix_message_templates_route')

    op.drop_table('message_templates')
