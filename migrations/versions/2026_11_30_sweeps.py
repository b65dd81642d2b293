"""sweeps: searches over job specs, whose trials are jobs

Revision ID: 4f6b2d9e8a17
Revises: c3d8a6f2e914
Create Date: 2026-11-30 23:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "4f6b2d9e8a17"
down_revision: str | None = "c3d8a6f2e914"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("objective", sa.JSON(), nullable=False),
        sa.Column("constraint", sa.JSON(), nullable=True),
        sa.Column("early_stopping", sa.JSON(), nullable=True),
        sa.Column("max_trials", sa.Integer(), nullable=False),
        sa.Column("max_parallel", sa.Integer(), nullable=False),
        sa.Column("max_failures", sa.Integer(), nullable=False),
        sa.Column("max_seconds", sa.Float(), nullable=True),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("trials_started", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_sweeps_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sweeps")),
    )
    op.create_index("ix_sweeps_tenant_created", "sweeps", ["tenant_id", "created_at", "id"])
    op.create_index(op.f("ix_sweeps_status"), "sweeps", ["status"])
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sweep_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("trial_number", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("params", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("stop_requested", sa.String(length=16), nullable=True))
        batch_op.create_index(batch_op.f("ix_jobs_sweep_id"), ["sweep_id"])
        batch_op.create_unique_constraint("uq_jobs_sweep_trial", ["sweep_id", "trial_number"])
        batch_op.create_foreign_key(
            batch_op.f("fk_jobs_sweep_id_sweeps"),
            "sweeps",
            ["sweep_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_jobs_sweep_id_sweeps"), type_="foreignkey")
        batch_op.drop_constraint("uq_jobs_sweep_trial", type_="unique")
        batch_op.drop_index(batch_op.f("ix_jobs_sweep_id"))
        batch_op.drop_column("stop_requested")
        batch_op.drop_column("params")
        batch_op.drop_column("trial_number")
        batch_op.drop_column("sweep_id")
    op.drop_index(op.f("ix_sweeps_status"), table_name="sweeps")
    op.drop_index("ix_sweeps_tenant_created", table_name="sweeps")
    op.drop_table("sweeps")
