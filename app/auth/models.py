from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from taas.app.core.db import Base, UTCDateTime, utcnow


class Tenant(Base):
    """A customer: owns API keys, jobs and datasets; sees nothing of any other tenant."""

    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Jobs it may have running at once per queue (None: TAAS_MAX_RUNNING_PER_TENANT).
    max_running: Mapped[int | None] = mapped_column(Integer, default=None)
    # When a job of this tenant was last sent to a worker: between tenants with as many running
    # jobs, the one served longest ago goes first (app/scheduling/dispatch.py).
    last_dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    api_keys: Mapped[list[ApiKey]] = relationship(back_populates="tenant")


class ApiKey(Base):
    """Only the SHA-256 of a key is stored; the key itself is shown once, when created.

    ``public_id`` (``key_<prefix>``) names the key in lists and in DELETE /v1/keys/{id}; the
    prefix is also in the key itself, so whoever holds a key can tell which one to revoke.
    A revoked key stays as a row (its hash keeps the key unusable and the list of what existed
    stays whole) but is no longer listed."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    scope: Mapped[str] = mapped_column(String(16))  # read | write | admin (app/auth/scopes.py)
    prefix: Mapped[str] = mapped_column(String(32))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    tenant: Mapped[Tenant] = relationship(back_populates="api_keys")
