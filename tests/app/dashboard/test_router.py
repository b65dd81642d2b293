"""The dashboard and docs pages: served from the package, under a strict CSP, nothing remote."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from taas.app.dashboard.router import CONTENT_SECURITY_POLICY, STATIC_DIR

PAGES = ("/", "/docs", "/redoc")


class AssetParser(HTMLParser):
    """Collects what a page loads, and anything a strict CSP would refuse."""

    def __init__(self) -> None:
        super().__init__()
        self.assets: list[str] = []
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script":
            if values.get("src"):
                self.assets.append(values["src"] or "")
            else:
                self.inline.append("<script> without src")
        if tag == "link" and values.get("href"):
            self.assets.append(values["href"] or "")
        if tag == "style":
            self.inline.append("<style>")
        handlers = [name for name, _ in attrs if name == "style" or name.startswith("on")]
        self.inline += [f"{tag} {name}=" for name in handlers]


def parse(html: str) -> AssetParser:
    parser = AssetParser()
    parser.feed(html)
    return parser


@pytest.mark.parametrize("page", ["/", "/docs"])
def test_page_is_html_under_a_strict_csp(api: TestClient, page: str) -> None:
    response = api.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY
    assert "unsafe" not in CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"


def test_redoc_styles_need_this_response_s_nonce_and_scripts_stay_self_only(
    api: TestClient,
) -> None:
    first, second = api.get("/redoc"), api.get("/redoc")
    csp = first.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp)
    assert nonce is not None
    assert f'<meta name="style-nonce" content="{nonce.group(1)}">' in first.text
    assert nonce.group(1) not in second.headers["content-security-policy"]  # fresh each time
    assert "script-src 'self';" in csp
    assert "unsafe" not in csp


@pytest.mark.parametrize("page", PAGES)
def test_page_loads_only_local_files_that_exist_and_nothing_inline(
    api: TestClient, page: str
) -> None:
    parsed = parse(api.get(page).text)
    assert parsed.inline == []
    assert parsed.assets
    for asset in parsed.assets:
        assert asset.startswith("/ui/"), asset  # no other host, no protocol-relative URL
        response = api.get(asset)
        assert response.status_code == 200, asset
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_modules_are_served_as_javascript(api: TestClient) -> None:
    for path in ("/ui/js/app.js", "/ui/vendor/uplot/uPlot.esm.js", "/ui/docs/swagger-init.js"):
        response = api.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/javascript"), path


def test_every_module_import_resolves_to_a_shipped_file() -> None:
    # A typo in an import path breaks a page only in the browser; catch it here.
    pattern = re.compile(r"""^\s*(?:import|export)\b[^'"]*?from\s+["'](\.[^"']+)["']""", re.M)
    modules = sorted((STATIC_DIR / "js").rglob("*.js"))
    assert modules
    for module in modules:
        for target in pattern.findall(module.read_text()):
            assert (module.parent / target).resolve().is_file(), (module.name, target)


@pytest.mark.parametrize(
    "path",
    [
        "/ui/../router.py",
        "/ui/%2e%2e/router.py",
        "/ui/..%2f__init__.py",
        "/ui/vendor",
        "/ui/no-such-file.js",
        "/ui/",
    ],
)
def test_only_files_under_static_are_served(api: TestClient, path: str) -> None:
    response = api.get(path)
    assert response.status_code == 404
    assert "detail" in response.json()


def test_openapi_stays_and_the_docs_pages_stay_out_of_it(api: TestClient) -> None:
    document = api.get("/openapi.json").json()
    assert "/v1/jobs" in document["paths"]
    assert not {"/", "/docs", "/redoc", "/ui/{path}"} & set(document["paths"])


def test_vendored_libraries_name_their_version_and_license() -> None:
    folders = sorted(path for path in (STATIC_DIR / "vendor").iterdir() if path.is_dir())
    assert {folder.name for folder in folders} == {"redoc", "swagger-ui", "uplot"}
    for folder in folders:
        assert (folder / "LICENSE").is_file(), folder.name
        version = (folder / "VERSION").read_text()
        assert re.search(r"npm package \S+@\d+\.\d+\.\d+", version), folder.name


def test_the_api_docs_show_the_public_routes_only(api: TestClient) -> None:
    public = api.get("/openapi-public.json").json()
    assert "/v1/jobs" in public["paths"]
    assert not [path for path in public["paths"] if path.startswith("/internal/")]
    assert "WorkerToken" not in public["components"]["securitySchemes"]
    schemas = public["components"]["schemas"]
    assert {"JobSpec", "TrainingSpec"} <= set(schemas)  # reached through JobOut
    assert not {"ClaimRequest", "HeartbeatRequest"} & set(schemas)  # the workers' only
    whole = api.get("/openapi.json").json()  # for tools and workers: everything
    assert any(path.startswith("/internal/") for path in whole["paths"])
    assert "ClaimRequest" in whole["components"]["schemas"]
    for page in ("swagger-init.js", "redoc-init.js"):
        assert '"/openapi-public.json"' in (STATIC_DIR / "docs" / page).read_text(), page
