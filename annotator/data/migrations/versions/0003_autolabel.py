"""label provenance for machine labels: the model version that backed an auto/propagated label
and its probability

Revision ID: 0003_autolabel
Revises: 0002
Create Date: 2026-12-03 07:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0003_autolabel'
down_revision = '0003_privacy'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.add_column(sa.Column('model_version_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('probability', sa.Double(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f('fk_labels_model_version_id_model_versions'), 'model_versions',
            ['model_version_id'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_labels_model_version_id_model_versions'),
                                 type_='foreignkey')
        batch_op.drop_column('probability')
        batch_op.drop_column('model_version_id')
