"""team server: case-insensitive accounts, lockouts, sessions, label decisions, job liveness

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 23:00:00
"""
import re

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('annotators', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name_key', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('disabled_at', sa.DateTime(), nullable=True))
    _fill_name_keys()
    with op.batch_alter_table('annotators', schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f('uq_annotators_name_key'), ['name_key'])

    op.create_table('auth_failures',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('first_at', sa.DateTime(), nullable=False),
    sa.Column('locked_until', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_auth_failures'))
    )
    op.create_table('user_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('annotator_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(), nullable=True),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['annotator_id'], ['annotators.id'], name=op.f('fk_user_sessions_annotator_id_annotators'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_sessions')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_user_sessions_token_hash'))
    )
    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_sessions_annotator_id'), ['annotator_id'], unique=False)

    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.add_column(sa.Column('method', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('decision_id', sa.String(length=32), nullable=True))
        batch_op.create_index('ix_labels_decision', ['decision_id'], unique=False)

    with op.batch_alter_table('crops', schema=None) as batch_op:
        batch_op.add_column(sa.Column('added_by', sa.String(length=16), nullable=True))

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('detail', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('host', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('cancel_requested', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('started_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(), nullable=True))
    _redact_stream_sources()


def _fill_name_keys() -> None:
    """name_key = lower(name); a later account whose name differs only by case gets a key that
    nobody can type (``name#id``), so it stays visible but cannot sign in until renamed."""
    conn = op.get_bind()
    seen = set()
    for id_, name in conn.execute(sa.text("SELECT id, name FROM annotators ORDER BY id")).all():
        key = name.lower()
        if key in seen:
            key = f"{key}#{id_}"
        seen.add(key)
        conn.execute(sa.text("UPDATE annotators SET name_key = :k WHERE id = :i"),
                     {"k": key, "i": id_})


def _redact_stream_sources() -> None:
    """Stream sources stored before this version kept the password in the URL: strip it."""
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, key, uri, name FROM sources WHERE kind = 'stream'")).all()
    pattern = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)([^/@:]*):([^/@]*)@")
    for id_, key, uri, name in rows:
        red = [pattern.sub(r"\1\2:***@", v or "") for v in (key, uri, name)]
        conn.execute(sa.text("UPDATE sources SET key = :k, uri = :u, name = :n WHERE id = :i"),
                     {"k": red[0], "u": red[1], "n": red[2], "i": id_})


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        for col in ('heartbeat_at', 'started_at', 'cancel_requested', 'host', 'detail'):
            batch_op.drop_column(col)
    with op.batch_alter_table('crops', schema=None) as batch_op:
        batch_op.drop_column('added_by')
    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.drop_index('ix_labels_decision')
        batch_op.drop_column('decision_id')
        batch_op.drop_column('method')
    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_sessions_annotator_id'))
    op.drop_table('user_sessions')
    op.drop_table('auth_failures')
    with op.batch_alter_table('annotators', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_annotators_name_key'), type_='unique')
        batch_op.drop_column('disabled_at')
        batch_op.drop_column('name_key')
