"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 08:49:40.946431
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('annotators',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=True),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_annotators')),
    sa.UniqueConstraint('name', name=op.f('uq_annotators_name'))
    )
    op.create_table('datasets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('manifest', sa.Text(), nullable=False),
    sa.Column('counts', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_datasets')),
    sa.UniqueConstraint('name', name=op.f('uq_datasets_name'))
    )
    op.create_table('jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('args', sa.JSON(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('progress', sa.Float(), nullable=False),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('log_path', sa.Text(), nullable=True),
    sa.Column('started_by', sa.String(length=100), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs'))
    )
    op.create_table('sources',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=300), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('uri', sa.Text(), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('fps', sa.Double(), nullable=True),
    sa.Column('frame_count', sa.Integer(), nullable=True),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('frames_done', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('stats', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sources')),
    sa.UniqueConstraint('key', name=op.f('uq_sources_key'))
    )
    op.create_table('crops',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('origin', sa.String(length=500), nullable=False),
    sa.Column('frame_index', sa.Integer(), nullable=True),
    sa.Column('timestamp_s', sa.Double(), nullable=True),
    sa.Column('x1', sa.Double(), nullable=True),
    sa.Column('y1', sa.Double(), nullable=True),
    sa.Column('x2', sa.Double(), nullable=True),
    sa.Column('y2', sa.Double(), nullable=True),
    sa.Column('detector', sa.String(length=40), nullable=True),
    sa.Column('det_score', sa.Double(), nullable=True),
    sa.Column('keypoints', sa.JSON(), nullable=True),
    sa.Column('sharpness', sa.Double(), nullable=True),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('track_id', sa.Integer(), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('path', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('priority', sa.Float(), nullable=False),
    sa.Column('votes_needed', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], name=op.f('fk_crops_source_id_sources'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_crops')),
    sa.UniqueConstraint('source_id', 'origin', name=op.f('uq_crops_source_id'))
    )
    with op.batch_alter_table('crops', schema=None) as batch_op:
        batch_op.create_index('ix_crops_queue', ['status', 'priority', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_crops_sha256'), ['sha256'], unique=False)
        batch_op.create_index('ix_crops_source_track', ['source_id', 'track_id'], unique=False)

    op.create_table('model_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=True),
    sa.Column('classes', sa.JSON(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('promoted_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_model_versions_dataset_id_datasets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_versions')),
    sa.UniqueConstraint('name', name=op.f('uq_model_versions_name'))
    )
    op.create_table('labels',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('crop_id', sa.Integer(), nullable=False),
    sa.Column('annotator_id', sa.Integer(), nullable=False),
    sa.Column('value', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('seconds', sa.Double(), nullable=True),
    sa.Column('sampling', sa.String(length=20), nullable=True),
    sa.Column('superseded_by_id', sa.Integer(), nullable=True),
    sa.Column('undone_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['annotator_id'], ['annotators.id'], name=op.f('fk_labels_annotator_id_annotators')),
    sa.ForeignKeyConstraint(['crop_id'], ['crops.id'], name=op.f('fk_labels_crop_id_crops'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['superseded_by_id'], ['labels.id'], name=op.f('fk_labels_superseded_by_id_labels')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_labels'))
    )
    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.create_index('ix_labels_annotator_time', ['annotator_id', 'created_at'], unique=False)
        batch_op.create_index('ix_labels_crop', ['crop_id'], unique=False)

    op.create_table('leases',
    sa.Column('crop_id', sa.Integer(), nullable=False),
    sa.Column('annotator_id', sa.Integer(), nullable=False),
    sa.Column('claimed_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('sampling', sa.String(length=20), nullable=True),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['annotator_id'], ['annotators.id'], name=op.f('fk_leases_annotator_id_annotators')),
    sa.ForeignKeyConstraint(['crop_id'], ['crops.id'], name=op.f('fk_leases_crop_id_crops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('crop_id', name=op.f('pk_leases'))
    )
    with op.batch_alter_table('leases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_leases_annotator_id'), ['annotator_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_leases_expires_at'), ['expires_at'], unique=False)

    op.create_table('predictions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('crop_id', sa.Integer(), nullable=False),
    sa.Column('model_version_id', sa.Integer(), nullable=False),
    sa.Column('probs', sa.JSON(), nullable=False),
    sa.Column('uncertainty', sa.Double(), nullable=False),
    sa.Column('embedding', sa.LargeBinary(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['crop_id'], ['crops.id'], name=op.f('fk_predictions_crop_id_crops'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], name=op.f('fk_predictions_model_version_id_model_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_predictions')),
    sa.UniqueConstraint('model_version_id', 'crop_id', name=op.f('uq_predictions_model_version_id'))
    )
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_predictions_crop_id'), ['crop_id'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_predictions_crop_id'))

    op.drop_table('predictions')
    with op.batch_alter_table('leases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_leases_expires_at'))
        batch_op.drop_index(batch_op.f('ix_leases_annotator_id'))

    op.drop_table('leases')
    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.drop_index('ix_labels_crop')
        batch_op.drop_index('ix_labels_annotator_time')

    op.drop_table('labels')
    op.drop_table('model_versions')
    with op.batch_alter_table('crops', schema=None) as batch_op:
        batch_op.drop_index('ix_crops_source_track')
        batch_op.drop_index(batch_op.f('ix_crops_sha256'))
        batch_op.drop_index('ix_crops_queue')

    op.drop_table('crops')
    op.drop_table('sources')
    op.drop_table('jobs')
    op.drop_table('datasets')
    op.drop_table('annotators')

