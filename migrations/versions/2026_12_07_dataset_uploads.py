"""dataset uploads: files users put straight into object storage

Revision ID: 5e7a1c3b9f20
Revises: 6c2f8e1a9d47
Create Date: 2026-12-07 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5e7a1c3b9f20"
down_revision: str | None = "6c2f8e1a9d47"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dataset_uploads",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("filename", sa.String(length=200), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("part_sha256", sa.JSON(), nullable=False),
        sa.Column("store_upload_id", sa.String(length=1024), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("dataset_uploads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dataset_uploads_tenant_id"), ["tenant_id"])
        batch_op.create_index(batch_op.f("ix_dataset_uploads_expires_at"), ["expires_at"])


def downgrade() -> None:
    with op.batch_alter_table("dataset_uploads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dataset_uploads_expires_at"))
        batch_op.drop_index(batch_op.f("ix_dataset_uploads_tenant_id"))
    op.drop_table("dataset_uploads")
