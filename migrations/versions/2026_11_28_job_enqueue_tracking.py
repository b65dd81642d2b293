"""jobs: when and how often each was sent to the broker (for the reconciler)

Revision ID: 7e2a9d4c1b03
Revises: 5d1f0c2b7a41
Create Date: 2026-11-28 09:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7e2a9d4c1b03"
down_revision: str | None = "5d1f0c2b7a41"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("enqueue_count", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.alter_column("enqueue_count", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("enqueue_count")
        batch_op.drop_column("enqueued_at")
