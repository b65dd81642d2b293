"""GET /v1/jobs/{id}/artifacts/{name}: streamed bytes with the sha256 as ETag, conditional requests,
byte ranges, the file name, unsafe names, and what deleting the job leaves on disk."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from taas.app.core import migrate
from taas.app.core.config import get_settings
from tests.app.artifacts import artifact_rows, claimed_job, files_under, segment, upload
from tests.conftest import TINY_SYNTHETIC, clear_caches

SIZE = 1_000_000
DATA = random.Random(7).randbytes(SIZE)  # not a repeating pattern: a wrong offset shows
DIGEST = hashlib.sha256(DATA).hexdigest()
ETAG = f'"{DIGEST}"'
SECRET = b"outside the storage root"


@dataclass(frozen=True)
class Stored:
    job_id: str
    url: str


@pytest.fixture
def stored(api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]) -> Stored:
    """A running job with one 1 MB artifact, `weights.bin`."""
    job_id = claimed_job(api, auth, worker_auth)
    response = upload(api, worker_auth, job_id, "weights.bin", DATA)
    assert response.status_code == 200, response.text
    return Stored(job_id, f"/v1/jobs/{job_id}/artifacts/weights.bin")


def test_download_is_streamed_with_the_sha256_etag_and_the_file_name(
    api: TestClient, auth: dict[str, str], stored: Stored
) -> None:
    with api.stream("GET", stored.url, headers=auth) as response:
        chunks = list(response.iter_raw())
    assert response.status_code == 200
    assert b"".join(chunks) == DATA
    assert len(chunks) > 1, "the file came back as one buffered body"
    assert max(len(chunk) for chunk in chunks) <= 64 * 1024
    assert response.headers["etag"] == ETAG
    assert response.headers["content-length"] == str(SIZE)
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"] == 'attachment; filename="weights.bin"'
    assert response.headers["accept-ranges"] == "bytes"


@pytest.mark.parametrize(
    "if_none_match",
    [
        ETAG,
        f"W/{ETAG}",
        "*",
        f'"other", {ETAG}',
        f'W/"a",W/{ETAG} , "b"',
        # Three full sha256 tags, as a cache holding three versions sends: over 200 characters.
        f'"{"0" * 64}", "{"1" * 64}", {ETAG}',
    ],
    ids=["strong", "weak", "star", "list", "list-weak-spaces", "list-of-three-sha256"],
)
def test_if_none_match_with_our_etag_is_304_without_a_body(
    api: TestClient, auth: dict[str, str], stored: Stored, if_none_match: str
) -> None:
    response = api.get(stored.url, headers={**auth, "If-None-Match": if_none_match})
    assert response.status_code == 304, response.text[:500]
    assert response.content == b""
    assert response.headers["etag"] == ETAG


@pytest.mark.parametrize(
    "if_none_match",
    ['"other"', DIGEST, f'"{DIGEST[:-1]}"', f'W/"{DIGEST.upper()}"', ""],
    ids=["other-tag", "unquoted-digest", "shorter-digest", "uppercase-digest", "empty"],
)
def test_if_none_match_without_our_etag_sends_the_file(
    api: TestClient, auth: dict[str, str], stored: Stored, if_none_match: str
) -> None:
    response = api.get(stored.url, headers={**auth, "If-None-Match": if_none_match})
    assert response.status_code == 200
    assert response.content == DATA


@pytest.mark.parametrize(
    ("range_header", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=100-299", 100, 299),
        (f"bytes={SIZE - 1}-{SIZE - 1}", SIZE - 1, SIZE - 1),
        ("bytes=999000-", 999_000, SIZE - 1),
        ("bytes=-500", SIZE - 500, SIZE - 1),
        (f"bytes=-{SIZE * 3}", 0, SIZE - 1),  # a suffix longer than the file is the whole file
        (f"bytes=500000-{SIZE * 3}", 500_000, SIZE - 1),  # the end is clamped to the last byte
    ],
    ids=["first-byte", "middle", "last-byte", "open-end", "suffix", "long-suffix", "long-end"],
)
def test_a_range_is_206_with_its_content_range(
    api: TestClient, auth: dict[str, str], stored: Stored, range_header: str, start: int, end: int
) -> None:
    response = api.get(stored.url, headers={**auth, "Range": range_header})
    assert response.status_code == 206, response.text[:500]
    assert response.content == DATA[start : end + 1]
    assert response.headers["content-range"] == f"bytes {start}-{end}/{SIZE}"
    assert response.headers["content-length"] == str(end - start + 1)
    assert response.headers["etag"] == ETAG


@pytest.mark.parametrize(
    "range_header",
    [f"bytes={SIZE}-", f"bytes={SIZE + 10}-{SIZE + 20}", "bytes=-0"],
    ids=["starts-at-size", "past-the-end", "empty-suffix"],
)
def test_an_unsatisfiable_range_is_416_with_the_size(
    api: TestClient, auth: dict[str, str], stored: Stored, range_header: str
) -> None:
    response = api.get(stored.url, headers={**auth, "Range": range_header})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{SIZE}"
    assert DATA[:100] not in response.content


def test_a_matching_if_none_match_wins_over_a_range(
    api: TestClient, auth: dict[str, str], stored: Stored
) -> None:
    headers = {**auth, "If-None-Match": ETAG, "Range": "bytes=0-9"}
    assert api.get(stored.url, headers=headers).status_code == 304


def test_if_range_resumes_only_the_same_bytes(
    api: TestClient, auth: dict[str, str], stored: Stored
) -> None:
    same = api.get(stored.url, headers={**auth, "Range": "bytes=10-19", "If-Range": ETAG})
    assert (same.status_code, same.content) == (206, DATA[10:20])
    changed = api.get(stored.url, headers={**auth, "Range": "bytes=10-19", "If-Range": '"old"'})
    assert (changed.status_code, changed.content) == (200, DATA)


def test_a_10_mb_artifact_downloaded_in_three_ranges_reassembles(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    data = random.Random(10).randbytes(10 * 1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    job_id = claimed_job(api, auth, worker_auth)
    assert upload(api, worker_auth, job_id, "model.safetensors", data).status_code == 200
    url = f"/v1/jobs/{job_id}/artifacts/model.safetensors"

    parts, whole = [], hashlib.sha256()
    for range_header in ("bytes=0-3499999", "bytes=3500000-6999999", "bytes=7000000-"):
        response = api.get(url, headers={**auth, "Range": range_header})
        assert response.status_code == 206, (range_header, response.text[:500])
        assert response.headers["etag"] == f'"{digest}"'
        parts.append(response.headers["content-range"])
        whole.update(response.content)
    assert parts == [
        f"bytes 0-3499999/{len(data)}",
        f"bytes 3500000-6999999/{len(data)}",
        f"bytes 7000000-{len(data) - 1}/{len(data)}",
    ]
    assert whole.hexdigest() == digest


# Each is sent as written: `..%2Fx` reaches the route as the name `../x`; `../x` and `a/b` are
# what a careless client sends (httpx folds `../x` before sending: then no route matches).
UNSAFE_NAMES = [
    "../x",
    "..%2Fx",
    "%2e%2e/x",
    "%2E%2E",
    "..%2F..%2F..%2Fsecret.txt",
    "a/b",
    "a%2Fb",
    "%2Fetc%2Fpasswd",
    "/etc/passwd",
    "..%5Cx",
    "..%5C..%5Csecret.txt",
    "a%00b",
    "weights.bin%00.txt",
    ".x",
    ".env",
    "a" * 101,
    "a" * 201,
]


@pytest.fixture
def outside_files(taas_home: Path) -> Iterator[list[Path]]:
    """Files a traversal from the artifact root or a job's folder would reach; unchanged after."""
    root = get_settings().resolved_artifact_dir
    root.mkdir(parents=True, exist_ok=True)
    targets = [taas_home / "secret.txt", root / "secret.txt", root / "x", taas_home / "x"]
    for target in targets:
        target.write_bytes(SECRET)
    yield targets
    for target in targets:
        assert target.read_bytes() == SECRET, target


@pytest.mark.parametrize("raw_segment", UNSAFE_NAMES, ids=lambda raw: raw[:30])
def test_unsafe_names_are_4xx_on_download_and_reach_no_file(
    api: TestClient,
    auth: dict[str, str],
    stored: Stored,
    outside_files: list[Path],
    raw_segment: str,
) -> None:
    response = api.get(f"/v1/jobs/{stored.job_id}/artifacts/{raw_segment}", headers=auth)
    assert 400 <= response.status_code < 500, response.text[:500]
    assert response.headers["content-type"] == "application/json"
    assert SECRET not in response.content
    assert DATA[:100] not in response.content


@pytest.mark.parametrize("raw_segment", UNSAFE_NAMES, ids=lambda raw: raw[:30])
def test_unsafe_names_are_4xx_on_upload_and_write_nothing(
    api: TestClient,
    auth: dict[str, str],
    worker_auth: dict[str, str],
    stored: Stored,
    outside_files: list[Path],
    tmp_path: Path,
    raw_segment: str,
) -> None:
    before = files_under(tmp_path)
    body = b"payload of an unsafe upload"
    response = api.put(
        f"/internal/v1/jobs/{stored.job_id}/attempts/1/artifacts/{raw_segment}",
        content=body,
        headers={**worker_auth, "X-Content-SHA256": hashlib.sha256(body).hexdigest()},
    )
    assert 400 <= response.status_code < 500, response.text[:500]
    # The SQLite files change with every request; nothing else may appear anywhere.
    assert files_under(tmp_path) == before
    assert [row["name"] for row in artifact_rows(api, auth, stored.job_id)] == ["weights.bin"]


def test_names_that_reach_the_routes_get_their_own_answer(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str], stored: Stored
) -> None:
    """Where the client keeps the name intact, the upload says why (422 on `name`) and the
    download says there is no such artifact (404, naming it)."""
    for name in ["../x", "a/b", "/etc/passwd", "..\\x", "a\x00b", ".x", "a" * 101]:
        refused = upload(api, worker_auth, stored.job_id, name, b"data")
        assert refused.status_code == 422, (name, refused.text)
        assert refused.json()["detail"][0]["loc"] == ["path", "name"]
        download = api.get(f"/v1/jobs/{stored.job_id}/artifacts/{segment(name)}", headers=auth)
        assert download.status_code == 404, (name, download.text)
        assert repr(name[:100]) in download.json()["detail"]


def test_deleting_a_job_removes_its_storage_folder_and_nothing_else(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str], stored: Stored
) -> None:
    other = claimed_job(api, auth, worker_auth)
    assert upload(api, worker_auth, other, "weights.bin", DATA).status_code == 200
    assert upload(api, worker_auth, stored.job_id, "model.json", b"{}").status_code == 200
    root = get_settings().resolved_artifact_dir
    assert len(files_under(root / stored.job_id)) == 2

    failed = api.post(
        f"/internal/v1/jobs/{stored.job_id}/attempts/1/finish",
        json={"status": "failed"},
        headers=worker_auth,
    )
    assert failed.status_code == 200, failed.text
    assert api.delete(f"/v1/jobs/{stored.job_id}", headers=auth).status_code == 204

    assert not (root / stored.job_id).exists()
    assert api.get(stored.url, headers=auth).status_code == 404
    assert len(files_under(root / other)) == 1
    assert api.get(f"/v1/jobs/{other}/artifacts/weights.bin", headers=auth).content == DATA


def test_deleting_a_job_that_never_uploaded_is_204(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    submitted = api.post("/v1/jobs", json=TINY_SYNTHETIC, headers=auth).json()
    assert api.post(f"/v1/jobs/{submitted['id']}/cancel", headers=auth).status_code == 202
    assert api.delete(f"/v1/jobs/{submitted['id']}", headers=auth).status_code == 204
    assert not (get_settings().resolved_artifact_dir / submitted["id"]).exists()


@pytest.fixture
def postgres_api(
    taas_home: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    from taas.app.main import create_app

    monkeypatch.setenv("TAAS_DATABASE_URL", postgres_url)
    clear_caches()
    migrate.upgrade()
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        yield client
    clear_caches()


@pytest.mark.postgres
def test_a_nul_in_the_name_is_4xx_on_postgresql_too(
    postgres_api: TestClient, make_key: Callable[[str], str], worker_auth: dict[str, str]
) -> None:
    """PostgreSQL refuses text with a NUL byte: a name with one must never reach a query."""
    auth = {"Authorization": f"Bearer {make_key('acme')}"}
    job_id = claimed_job(postgres_api, auth, worker_auth)
    for raw_segment in ["a%00b", "model.json%00"]:
        download = postgres_api.get(f"/v1/jobs/{job_id}/artifacts/{raw_segment}", headers=auth)
        assert download.status_code == 404, download.text
        refused = postgres_api.put(
            f"/internal/v1/jobs/{job_id}/attempts/1/artifacts/{raw_segment}",
            content=b"{}",
            headers={**worker_auth, "X-Content-SHA256": hashlib.sha256(b"{}").hexdigest()},
        )
        assert refused.status_code == 422, refused.text
    assert artifact_rows(postgres_api, auth, job_id) == []


MALFORMED_RANGES = [
    "bytes",
    "items=0-9",
    "bytes=",
    "bytes=-",
    "bytes=abc",
    "bytes=5-3",
    "bytes=0-9,x-y",
    "bytes=1-2-3",
    "bytes=0x10-20",
]


@pytest.mark.parametrize("range_header", MALFORMED_RANGES)
def test_a_malformed_range_is_a_json_400_naming_the_header(
    api: TestClient, auth: dict[str, str], stored: Stored, range_header: str
) -> None:
    response = api.get(stored.url, headers={**auth, "Range": range_header})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["detail"].startswith("malformed Range header")
    assert DATA[:100] not in response.content


@pytest.mark.parametrize(
    "range_header",
    ["bytes=0-9, 20-29", "BYTES = 0-9", "bytes=0-9,,20-29", "bytes= -500"],
)
def test_lenient_but_valid_ranges_are_served(
    api: TestClient, auth: dict[str, str], stored: Stored, range_header: str
) -> None:
    response = api.get(stored.url, headers={**auth, "Range": range_header})
    assert response.status_code == 206, response.text[:300]
