"""The web dashboard and the API docs pages: static files only, served under a strict CSP.

The dashboard is a client of the public API (it holds no routes of its own for data), so these
routes serve HTML, ES modules, CSS and the vendored libraries and nothing else. Every file comes
from the package (``static/``), so the pages work without reaching any other host.
"""

from __future__ import annotations

import mimetypes
import secrets
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from taas.app.core.errors import NotFound
from taas.app.core.openapi import public_document

STATIC_DIR = Path(__file__).resolve().parent / "static"

# No inline script or style, no other host: scripts set element.style from JS (uPlot does),
# which CSP allows; a `style=` attribute or a <script> block in the HTML would be refused.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# Browsers must run modules only with a JavaScript type; the platform's table may lack one.
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}

# The two <style> elements redoc.standalone.js 2.5.4 writes while it loads, before it knows the
# nonce: its scrollbar CSS and an empty one. Pinned by hash (they change only with the bundle;
# tests/e2e/dashboard/ fails on any CSP violation on /redoc).
REDOC_STYLE_HASHES = (
    "'sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc='",
    "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='",
)

router = APIRouter(include_in_schema=False)
StaticPath = Annotated[str, PathParam(max_length=300)]


def static_file(relative: str, *, cache: str = "no-cache") -> FileResponse:
    """A file under STATIC_DIR with the security headers, or 404 for anything else (a path that
    climbs out with `..`, a folder, a hidden file)."""
    path = (STATIC_DIR / relative).resolve()
    hidden = any(part.startswith(".") for part in Path(relative).parts)
    if hidden or not path.is_relative_to(STATIC_DIR) or not path.is_file():
        raise NotFound(f"no dashboard file {relative[:100]!r}")
    media_type = MEDIA_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
    headers = {**SECURITY_HEADERS, "Cache-Control": cache}
    return FileResponse(path, media_type=media_type or "application/octet-stream", headers=headers)


@router.get("/")
def dashboard() -> FileResponse:
    return static_file("index.html")


@router.get("/docs")
def swagger_ui() -> FileResponse:
    """Swagger UI for the public API, from the vendored bundle (FastAPI's default uses a CDN)."""
    return static_file("docs.html")


@router.get("/openapi-public.json", include_in_schema=False)
def public_openapi(request: Request) -> JSONResponse:
    """The OpenAPI document without the workers' internal routes: what /docs and /redoc show
    to the people who use the API. /openapi.json stays whole, for tools and workers."""
    document = public_document(request.app.openapi())
    return JSONResponse(document, headers={"Cache-Control": "no-cache"})


@router.get("/redoc")
def redoc() -> HTMLResponse:
    """ReDoc for /openapi.json. Its styled-components write <style> elements, which a strict CSP
    refuses unless they carry the response's nonce: ReDoc adds the one its `nonce` option names,
    and the init script reads it from the page. Scripts stay 'self' only."""
    nonce = secrets.token_urlsafe(18)
    html = (STATIC_DIR / "redoc.html").read_text().replace("{{style_nonce}}", nonce)
    styles = " ".join([f"'nonce-{nonce}'", *REDOC_STYLE_HASHES])
    policy = CONTENT_SECURITY_POLICY.replace("style-src 'self'", f"style-src 'self' {styles}")
    headers = {**SECURITY_HEADERS, "Content-Security-Policy": policy, "Cache-Control": "no-store"}
    return HTMLResponse(html, headers=headers)


@router.get("/ui/{path:path}")
def dashboard_file(path: StaticPath) -> FileResponse:
    # no-cache still lets the browser reuse a file after a cheap revalidation (ETag), so a new
    # release is picked up at once without versioned file names.
    return static_file(path)
