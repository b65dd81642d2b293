"""Uploaded datasets: one row per tenant upload; the bytes live in DatasetStorage."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from taas.app.core.db import Base, UTCDateTime, utcnow


class Dataset(Base):
    __tablename__ = "datasets"
    # An identical upload by the same tenant finds this row instead of storing a copy.
    __table_args__ = (UniqueConstraint("tenant_id", "upload_sha256"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    source_format: Mapped[str] = mapped_column(String(8))  # npz, csv or zip
    upload_sha256: Mapped[str] = mapped_column(String(64))  # of the bytes the user sent
    upload_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))  # of the canonical file workers download
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    shape: Mapped[list[int]] = mapped_column(JSON)  # (C, H, W); feature vectors are (D, 1, 1)
    dtype: Mapped[str] = mapped_column(String(8))  # uint8 or float32
    class_names: Mapped[list[str]] = mapped_column(JSON)
    train_size: Mapped[int] = mapped_column(Integer)
    test_size: Mapped[int] = mapped_column(Integer)  # 0: a holdout of the training split is used
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DatasetUpload(Base):
    """A file a user is putting straight into object storage (presigned URLs); it becomes a
    Dataset when completed and validated, and is removed then, when aborted, or once expired."""

    __tablename__ = "dataset_uploads"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    filename: Mapped[str] = mapped_column(String(200))
    options: Mapped[dict[str, object]] = mapped_column(JSON)  # label_column, image_size
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    part_sha256: Mapped[list[str]] = mapped_column(JSON)
    store_upload_id: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
