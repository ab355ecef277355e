"""slices: per-crop slice attributes (face px, sharpness, light, pose, colour, hour)

Revision ID: 0003_slices
Revises: 0002
Create Date: 2026-12-03 07:40:00

Existing crops get their rows from ``annotator slices --backfill`` (it reads the crop files,
which a migration should not).
"""
import sqlalchemy as sa
from alembic import op

revision = '0003_slices'
down_revision = '0003_autolabel'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('crop_attributes',
    sa.Column('crop_id', sa.Integer(), nullable=False),
    sa.Column('face_px', sa.Double(), nullable=True),
    sa.Column('sharpness', sa.Double(), nullable=True),
    sa.Column('brightness', sa.Double(), nullable=True),
    sa.Column('pose', sa.String(length=16), nullable=True),
    sa.Column('colour', sa.String(length=16), nullable=True),
    sa.Column('hour', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['crop_id'], ['crops.id'], name=op.f('fk_crop_attributes_crop_id_crops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('crop_id', name=op.f('pk_crop_attributes'))
    )


def downgrade() -> None:
    op.drop_table('crop_attributes')
