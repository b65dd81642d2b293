"""What an API key may do. Scopes are levels, each including the ones below it:
``read`` (GET/HEAD), ``write`` (also submit, cancel, upload, delete), ``admin`` (also manage the
tenant's keys)."""

from __future__ import annotations

from typing import Literal, get_args

Scope = Literal["read", "write", "admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
# Methods that change nothing: a read key may send them.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def grants(held: str, needed: Scope) -> bool:
    """Whether a key with scope ``held`` may do what needs ``needed``."""
    return held in SCOPES and SCOPES.index(held) >= SCOPES.index(needed)


def scope_for_method(method: str) -> Scope:
    return "read" if method.upper() in READ_METHODS else "write"
