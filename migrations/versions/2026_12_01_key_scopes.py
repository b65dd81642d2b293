"""key scopes: API keys get a public id, a name, a scope, an expiry and a last-used time

Keys that exist already become `default` admin keys, so everything they did still works.

Revision ID: 9a3e5c71d2b4
Revises: 4f6b2d9e8a17
Create Date: 2026-12-01 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9a3e5c71d2b4"
down_revision: str | None = "4f6b2d9e8a17"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("public_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("name", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("scope", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    _fill_existing_keys()
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.alter_column("public_id", existing_type=sa.String(length=40), nullable=False)
        batch_op.alter_column("name", existing_type=sa.String(length=100), nullable=False)
        batch_op.alter_column("scope", existing_type=sa.String(length=16), nullable=False)
        batch_op.create_unique_constraint(batch_op.f("uq_api_keys_public_id"), ["public_id"])


def _fill_existing_keys() -> None:
    """Existing keys: name `default`, scope admin, and `key_<prefix>` as their public id (the
    old 8-hex-digit prefixes may collide, rarely: a second one also gets the row id)."""
    connection = op.get_bind()
    keys = sa.table(
        "api_keys",
        sa.column("id", sa.Integer),
        sa.column("prefix", sa.String),
        sa.column("public_id", sa.String),
        sa.column("name", sa.String),
        sa.column("scope", sa.String),
    )
    taken: set[str] = set()
    for key_id, prefix in connection.execute(sa.select(keys.c.id, keys.c.prefix).order_by("id")):
        public_id = f"key_{prefix}" if f"key_{prefix}" not in taken else f"key_{prefix}_{key_id}"
        taken.add(public_id)
        connection.execute(
            keys.update()
            .where(keys.c.id == key_id)
            .values(public_id=public_id, name="default", scope="admin")
        )


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_api_keys_public_id"), type_="unique")
        batch_op.drop_column("last_used_at")
        batch_op.drop_column("expires_at")
        batch_op.drop_column("scope")
        batch_op.drop_column("name")
        batch_op.drop_column("public_id")
