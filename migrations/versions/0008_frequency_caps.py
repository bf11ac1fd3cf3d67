"""Kept counts for the audience preview (issue 4, R-45, R-46): customers over a
category's frequency cap, and mobiles several customers share

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

# As app.models.messages.CATEGORIES when this migration was written.
CATEGORIES = ("notice", "market", "account", "advisory", "internal", "inquiry", "product")


def upgrade():
    op.create_table('capped_customers',
    sa.Column('category', sa.String(length=12), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('capped_through', sa.Date(), nullable=False),
    sa.PrimaryKeyConstraint('category', 'customer_id', name=op.f('pk_capped_customers'))
    )
    op.create_index('ix_capped_customers_through', 'capped_customers',
                    ['category', 'capped_through', 'customer_id'], unique=False)
    state = op.create_table('cap_state',
    sa.Column('category', sa.String(length=12), nullable=False),
    sa.Column('day_cap', sa.Integer(), nullable=True),
    sa.Column('week_cap', sa.Integer(), nullable=True),
    sa.Column('recounted_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('category', name=op.f('pk_cap_state'))
    )
    # One row per category from the start, so a build always finds its lock. The settings
    # columns stay empty: the scheduler's first tick counts the lists.
    op.bulk_insert(state, [{'category': c} for c in CATEGORIES])


    op.create_table('shared_mobiles',
    sa.Column('mobile', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('mobile', name=op.f('pk_shared_mobiles'))
    )
    op.create_table('shared_mobiles_state',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('max_customer_id', sa.Integer(), nullable=False),
    sa.Column('recounted_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shared_mobiles_state'))
    )


def downgrade():
    op.drop_table('shared_mobiles_state')
    op.drop_table('shared_mobiles')
    op.drop_table('cap_state')
    op.drop_index('ix_capped_customers_through', table_name='capped_customers')
    op.drop_table('capped_customers')
