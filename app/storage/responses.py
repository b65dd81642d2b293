"""Answering a download from the object store: a local file, a proxied stream or a redirect."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import Response
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse

from taas.app.core.errors import NotFound
from taas.app.storage.objects import ObjectMissing, ObjectStore

MEDIA_TYPE = "application/octet-stream"


def object_response(
    store: ObjectStore,
    key: str,
    *,
    headers: dict[str, str],
    missing: str,
    redirect: bool,
    url_seconds: int,
    filename: str | None = None,
    range_header: str | None = None,
) -> Response:
    """The object's bytes: a local file (Range handled by FileResponse), a 307 to a presigned
    URL of the store (``redirect``: the API leaves the data path), or the store's stream passed
    through (Range passed on). ``missing`` is the 404's message when the object is gone."""
    local = store.local_file(key)
    if local is not None:
        if not local.is_file():
            raise NotFound(missing)
        return FileResponse(local, media_type=MEDIA_TYPE, filename=filename, headers=headers)
    if redirect:
        # Checked first, so a vanished object is a 404 here rather than the store's error page.
        if store.stat(key) is None:
            raise NotFound(missing)
        url = store.presign_get(key, url_seconds, filename)
        return RedirectResponse(url, status_code=307, headers=headers)
    try:
        answer = store.read(key, range_header)
    except ObjectMissing:
        raise NotFound(missing) from None
    if filename is not None:
        headers = {**headers, "Content-Disposition": _attachment(filename)}
    return StreamingResponse(
        answer.chunks,
        status_code=answer.status_code,
        headers={**headers, **answer.headers},
        media_type=MEDIA_TYPE,
    )


def _attachment(filename: str) -> str:
    # As FileResponse words it: artifact names are plain ASCII, quoted only when they are not.
    if quote(filename) == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename*=utf-8''{quote(filename)}"
