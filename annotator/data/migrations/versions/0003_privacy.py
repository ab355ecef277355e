"""privacy: the audit trail (who viewed, exported, erased, changed a role)

Revision ID: 0003_privacy
Revises: 0002
Create Date: 2026-12-03 07:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0003_privacy'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('trail_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('action', sa.String(length=24), nullable=False),
    sa.Column('page', sa.String(length=24), nullable=True),
    sa.Column('crop_id', sa.Integer(), nullable=True),
    sa.Column('erased', sa.Boolean(), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trail_events'))
    )
    with op.batch_alter_table('trail_events', schema=None) as batch_op:
        batch_op.create_index('ix_trail_events_at', ['at'], unique=False)
        batch_op.create_index('ix_trail_events_crop', ['crop_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('trail_events', schema=None) as batch_op:
        batch_op.drop_index('ix_trail_events_crop')
        batch_op.drop_index('ix_trail_events_at')
    op.drop_table('trail_events')
