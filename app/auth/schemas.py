"""What the key routes take and return. A key's hash never leaves the server; the key itself
is in the answer to its creation only."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from taas.app.auth.models import ApiKey
from taas.app.auth.scopes import Scope


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="what the key is for")
    scope: Scope = Field(
        description="read: GET only; write: also submit, cancel, upload, delete; "
        "admin: also manage the tenant's keys"
    )
    expires_at: AwareDatetime | None = Field(
        default=None, description="when the key stops working (with a time zone); none: never"
    )


class KeyOut(BaseModel):
    id: str = Field(description="the public id, `key_<prefix>`: the key starts `taas_<prefix>_`")
    name: str
    scope: Scope
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="to within a minute")

    @classmethod
    def of(cls, row: ApiKey) -> KeyOut:
        return cls(
            id=row.public_id,
            name=row.name,
            scope=row.scope,
            created_at=row.created_at,
            expires_at=row.expires_at,
            last_used_at=row.last_used_at,
        )


class CreatedKey(KeyOut):
    key: str = Field(description="the key itself: shown this once, stored only as a hash")


class KeyList(BaseModel):
    items: list[KeyOut]
