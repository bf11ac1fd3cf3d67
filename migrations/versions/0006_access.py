"""permission applications and their signatures, role history (issue 6)

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('access_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('applicant_id', sa.Integer(), nullable=False),
    sa.Column('applicant_unit_id', sa.Integer(), nullable=False),
    sa.Column('person_name', sa.String(length=100), nullable=False),
    sa.Column('person_unit_id', sa.Integer(), nullable=False),
    sa.Column('person_post', sa.String(length=100), nullable=False),
    sa.Column('target_user_id', sa.Integer(), nullable=True),
    sa.Column('username', sa.String(length=60), nullable=False),
    sa.Column('superior_id', sa.Integer(), nullable=True),
    sa.Column('role_codes', sa.String(length=400), nullable=False),
    sa.Column('data_scope', sa.String(length=10), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('effective_date', sa.Date(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('signed_by_id', sa.Integer(), nullable=True),
    sa.Column('signed_at', sa.DateTime(), nullable=True),
    sa.Column('approved_by_id', sa.Integer(), nullable=True),
    sa.Column('approved_at', sa.DateTime(), nullable=True),
    sa.Column('executed_by_id', sa.Integer(), nullable=True),
    sa.Column('executed_at', sa.DateTime(), nullable=True),
    sa.Column('rejected_by_id', sa.Integer(), nullable=True),
    sa.Column('rejected_at', sa.DateTime(), nullable=True),
    sa.Column('rejected_step', sa.String(length=10), nullable=False),
    sa.Column('rejection_reason', sa.Text(), nullable=False),
    sa.Column('withdrawn_at', sa.DateTime(), nullable=True),
    sa.Column('late', sa.Boolean(), nullable=False),
    sa.Column('result_user_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['applicant_id'], ['users.id'], name=op.f('fk_access_requests_applicant_id_users')),
    sa.ForeignKeyConstraint(['applicant_unit_id'], ['units.id'], name=op.f('fk_access_requests_applicant_unit_id_units')),
    sa.ForeignKeyConstraint(['approved_by_id'], ['users.id'], name=op.f('fk_access_requests_approved_by_id_users')),
    sa.ForeignKeyConstraint(['executed_by_id'], ['users.id'], name=op.f('fk_access_requests_executed_by_id_users')),
    sa.ForeignKeyConstraint(['person_unit_id'], ['units.id'], name=op.f('fk_access_requests_person_unit_id_units')),
    sa.ForeignKeyConstraint(['rejected_by_id'], ['users.id'], name=op.f('fk_access_requests_rejected_by_id_users')),
    sa.ForeignKeyConstraint(['result_user_id'], ['users.id'], name=op.f('fk_access_requests_result_user_id_users')),
    sa.ForeignKeyConstraint(['signed_by_id'], ['users.id'], name=op.f('fk_access_requests_signed_by_id_users')),
    sa.ForeignKeyConstraint(['superior_id'], ['users.id'], name=op.f('fk_access_requests_superior_id_users')),
    sa.ForeignKeyConstraint(['target_user_id'], ['users.id'], name=op.f('fk_access_requests_target_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_access_requests'))
    )
    with op.batch_alter_table('access_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_access_requests_applicant_id'), ['applicant_id'], unique=False)
        batch_op.create_index('ix_access_requests_kind_status', ['kind', 'status'], unique=False)
        batch_op.create_index('ix_access_requests_status_unit', ['status', 'applicant_unit_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_access_requests_target_user_id'), ['target_user_id'], unique=False)

    op.create_table('role_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('role_id', sa.Integer(), nullable=False),
    sa.Column('change', sa.String(length=8), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=True),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_role_changes_actor_id_users')),
    sa.ForeignKeyConstraint(['request_id'], ['access_requests.id'], name=op.f('fk_role_changes_request_id_access_requests')),
    sa.ForeignKeyConstraint(['role_id'], ['roles.id'], name=op.f('fk_role_changes_role_id_roles')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_role_changes_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_role_changes'))
    )
    with op.batch_alter_table('role_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_role_changes_request_id'), ['request_id'], unique=False)
        batch_op.create_index('ix_role_changes_user_at', ['user_id', 'at'], unique=False)


def downgrade():
    with op.batch_alter_table('role_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_role_changes_user_at')
        batch_op.drop_index(batch_op.f('ix_role_changes_request_id'))

    op.drop_table('role_changes')
    with op.batch_alter_table('access_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_access_requests_target_user_id'))
        batch_op.drop_index('ix_access_requests_status_unit')
        batch_op.drop_index('ix_access_requests_kind_status')
        batch_op.drop_index(batch_op.f('ix_access_requests_applicant_id'))

    op.drop_table('access_requests')
