"""live progress: within-epoch progress on jobs, the step series, the stream's events

Revision ID: c3d8a6f2e914
Revises: 9b4e1f7a2c58
Create Date: 2026-11-30 22:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c3d8a6f2e914"
down_revision: str | None = "9b4e1f7a2c58"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("progress_batches", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("progress_batches_per_epoch", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("samples_per_second", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("eta_seconds", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("progress_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "metric_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Float(), nullable=False),
        sa.Column("train_loss", sa.Float(), nullable=True),
        sa.Column("lr", sa.Float(), nullable=True),
        sa.Column("val_loss", sa.Float(), nullable=True),
        sa.Column("val_accuracy", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_metric_steps_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metric_steps")),
        sa.UniqueConstraint("job_id", "kind", "step", name=op.f("uq_metric_steps_job_id")),
    )
    op.create_index(op.f("ix_metric_steps_job_id"), "metric_steps", ["job_id"])
    op.create_table(
        "stream_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stream_events")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_stream_events_tenant_id_id", "stream_events", ["tenant_id", "id"])
    op.create_index("ix_stream_events_job_id_id", "stream_events", ["job_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_stream_events_job_id_id", table_name="stream_events")
    op.drop_index("ix_stream_events_tenant_id_id", table_name="stream_events")
    op.drop_table("stream_events")
    op.drop_index(op.f("ix_metric_steps_job_id"), table_name="metric_steps")
    op.drop_table("metric_steps")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("progress_at")
        batch_op.drop_column("eta_seconds")
        batch_op.drop_column("samples_per_second")
        batch_op.drop_column("progress_batches_per_epoch")
        batch_op.drop_column("progress_batches")
