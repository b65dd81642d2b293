"""datasets: uploaded datasets, and the dataset each job uses

Revision ID: 08c18b1a3b02
Revises: 53c64886b8d3
Create Date: 2026-11-28 08:13:02.400761
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "08c18b1a3b02"
down_revision: str | None = "53c64886b8d3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("source_format", sa.String(length=8), nullable=False),
        sa.Column("upload_sha256", sa.String(length=64), nullable=False),
        sa.Column("upload_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("shape", sa.JSON(), nullable=False),
        sa.Column("dtype", sa.String(length=8), nullable=False),
        sa.Column("class_names", sa.JSON(), nullable=False),
        sa.Column("train_size", sa.Integer(), nullable=False),
        sa.Column("test_size", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_datasets_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("tenant_id", "upload_sha256", name=op.f("uq_datasets_tenant_id")),
    )
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_datasets_tenant_id"), ["tenant_id"], unique=False)

    # Jobs that exist already get their spec's dataset, then the column becomes required.
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dataset", sa.String(length=100), nullable=True))
    _fill_job_datasets()
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.alter_column("dataset", existing_type=sa.String(length=100), nullable=False)
        batch_op.create_index(batch_op.f("ix_jobs_dataset"), ["dataset"], unique=False)


def _fill_job_datasets() -> None:
    jobs = sa.table("jobs", sa.column("id", sa.String), sa.column("spec", sa.JSON))
    dataset = sa.table("jobs", sa.column("id", sa.String), sa.column("dataset", sa.String))
    connection = op.get_bind()
    for job_id, spec in connection.execute(sa.select(jobs.c.id, jobs.c.spec)).all():
        name = str(spec.get("dataset", "")) if isinstance(spec, dict) else ""
        connection.execute(
            sa.update(dataset).where(dataset.c.id == job_id).values(dataset=name[:100])
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_dataset"))
        batch_op.drop_column("dataset")

    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_datasets_tenant_id"))

    op.drop_table("datasets")
