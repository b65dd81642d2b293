"""Compare two S3 client libraries, boto3 and obstore, against a local S3 server (moto).

What it measures, each in a fresh child Python process so that nothing one measurement imports,
allocates or caches leaks into the next:

1. import time: ``import boto3`` + ``boto3.client("s3")``, and ``import obstore`` +
   ``obstore.store.S3Store(...)``; the median of --import-runs processes (default 5);
2. a transfer of --size-mib MiB of random bytes (default 1024), written once to a temporary
   file: an upload from the file with each library's own multipart upload (boto3
   ``upload_file``; obstore ``obstore.put`` given the file's Path), both with 64 MiB parts and
   at most 10 parts in flight, then a download of the object into a file (boto3
   ``download_file``, 64 MiB ranged GETs, 10 threads; obstore ``obstore.get`` streamed chunk by
   chunk into the file). For each: wall seconds, MiB/s, the child's CPU seconds (user + sys,
   getrusage) spent in the transfer, its peak RSS (ru_maxrss) and the moto server's CPU seconds
   over the same time. Each download's sha256 must equal the source's. Three extra rows: boto3
   downloading with one streamed GET (moto reads the whole object for every Range request), and
   each library uploading with its default part size and concurrency;
3. capabilities, each one called against moto when the library has it: presigned GET, PUT and
   UploadPart URLs (fetched or uploaded with httpx; every signature is also recomputed here, with
   hmac, from the SigV4 rules, since moto does not check presigned signatures itself), and
   listing and aborting multipart uploads.

It prints the CPU, the library and Python versions first and a markdown table of every number
at the end. From the repository root:

    .venv/bin/python -m scripts.storage_client_bench            # 1024 MiB
    .venv/bin/python -m scripts.storage_client_bench --size-mib 64

moto (a pure-Python server on the same machine) is the other end of every transfer, so the
throughputs say more about moto than about an S3 service: compare the libraries' CPU time and
memory rather than their MiB/s.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, quote, urlsplit

# Nothing here imports boto3, obstore or httpx at module level: a child that measures an import
# must start with neither library (nor their shared dependencies) loaded.

BUCKET = "taas-bench"
REGION = "us-east-1"
ACCESS_KEY = "bench-access-key"
SECRET_KEY = "bench-secret-key"  # noqa: S105 - a dummy credential for the local moto server
MIB = 1024 * 1024
PART_SIZE = 64 * MIB
MAX_CONCURRENCY = 10  # boto3's TransferConfig default; obstore's put defaults to 12
OBSTORE_TIMEOUT = "10m"  # obstore's default 30 s covers a whole request, a 1 GiB GET included
RESULT_PREFIX = "RESULT "
LIBRARIES = ("boto3", "obstore")
UPLOAD = f"upload, {PART_SIZE // MIB} MiB parts x {MAX_CONCURRENCY}"
DOWNLOAD = {
    "boto3": f"download_file, {PART_SIZE // MIB} MiB ranged GETs x {MAX_CONCURRENCY}",
    "obstore": "get, one GET streamed",
}

Result = dict[str, Any]


# --- the parent: environment, moto server, child processes ---------------------------------


def print_environment() -> None:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    lines = cpuinfo.splitlines()
    model = next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "?"
    )
    flags_line = next((line for line in lines if line.startswith("flags")), "")
    flags = sorted({flag for flag in flags_line.split() if flag.startswith(("avx", "sha", "aes"))})
    print(f"CPU: {model}, {os.cpu_count()} logical cores")
    print(f"CPU flags (avx*, sha*, aes*): {' '.join(flags) or 'none'}")
    print(f"Python {platform.python_version()} ({sys.executable})")
    packages = ("boto3", "botocore", "s3transfer", "obstore", "moto", "httpx")
    print("Versions: " + ", ".join(f"{name} {version(name)}" for name in packages))
    print(
        f"Settings: part size {PART_SIZE // MIB} MiB, at most {MAX_CONCURRENCY} parts in flight"
        f" (both libraries), obstore request timeout {OBSTORE_TIMEOUT}, boto3 signature s3v4"
    )
    print(flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def moto_server() -> Iterator[tuple[str, int]]:
    """Run ``moto.server`` on a free port; yield its endpoint and process id."""
    port = free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering("127.0.0.1", port, server)
        yield endpoint, server.pid
    finally:
        server.terminate()
        server.wait(timeout=30)


def wait_until_answering(host: str, port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"moto.server exited with {server.returncode}")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit("moto.server did not answer within 60 s")


def child_environment() -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    environment.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_REGION=REGION
    )
    return environment


def run_child(task: str, endpoint: str, *arguments: str) -> Result:
    """Run one task of this module in a fresh Python process; return the JSON it reports."""
    command = [sys.executable, "-m", "scripts.storage_client_bench", "--child", task]
    command += ["--endpoint", endpoint, *arguments]
    done = subprocess.run(
        command, capture_output=True, text=True, env=child_environment(), check=False
    )
    sys.stderr.write(done.stderr)
    lines = done.stdout.splitlines()
    for line in lines:
        if not line.startswith(RESULT_PREFIX):
            print(f"  [{task}] {line}")
    if done.returncode != 0:
        sys.exit(f"child {task} failed with exit status {done.returncode}")
    result: Result = json.loads(lines[-1].removeprefix(RESULT_PREFIX))
    return result


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_random_file(path: Path, size_mib: int) -> str:
    """Write size_mib MiB of random bytes to path; return their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as file:
        for _ in range(size_mib):
            block = os.urandom(MIB)
            digest.update(block)
            file.write(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(16 * MIB):
            digest.update(block)
    return digest.hexdigest()


def measure_imports(endpoint: str, runs: int) -> dict[str, Result]:
    """The median of each import measurement over `runs` fresh processes per library."""
    samples: dict[str, list[Result]] = {library: [] for library in LIBRARIES}
    for run in range(runs):
        for library in LIBRARIES if run % 2 == 0 else reversed(LIBRARIES):
            samples[library].append(run_child(f"import-{library}", endpoint))
    medians = {}
    for library, results in samples.items():
        medians[library] = {key: statistics.median(r[key] for r in results) for key in results[0]}
        print(f"{library} import (median of {runs}): {describe(medians[library])}", flush=True)
    return medians


class Step(NamedTuple):
    library: str
    operation: str
    task: str  # the child task that runs it
    arguments: tuple[str, ...]


def transfer_steps(source: Path, size_mib: int) -> list[Step]:
    """Every transfer, in order, each run in its own process.

    The first two steps per library are the comparison (same part size and concurrency); the
    "extra" ones show what the library defaults and moto's handling of Range requests cost.
    """
    key = {library: f"{library}/random-{size_mib}MiB.bin" for library in LIBRARIES}
    upload = {library: ("--source", str(source), "--key", key[library]) for library in LIBRARIES}
    defaults = ("--source", str(source), "--key", f"defaults/random-{size_mib}MiB.bin")

    def into(library: str, name: str) -> tuple[str, ...]:
        return ("--key", key[library], "--destination", str(source.with_name(name)))

    return [
        Step("boto3", UPLOAD, "upload-boto3", upload["boto3"]),
        Step("boto3", DOWNLOAD["boto3"], "download-boto3", into("boto3", "by-boto3.bin")),
        Step("obstore", UPLOAD, "upload-obstore", upload["obstore"]),
        Step("obstore", DOWNLOAD["obstore"], "download-obstore", into("obstore", "by-obstore.bin")),
        Step("boto3", "extra: get_object, one GET streamed", "download-boto3-one-get",
             into("boto3", "by-boto3-one-get.bin")),
        Step("boto3", "extra: upload, defaults (8 MiB parts x 10)", "upload-boto3-defaults",
             defaults),
        Step("obstore", "extra: upload, defaults (5 MiB parts x 12)", "upload-obstore-defaults",
             defaults),
    ]  # fmt: skip


def measure_transfers(
    endpoint: str, moto_pid: int, source: Path, source_sha256: str, size_mib: int
) -> dict[tuple[str, str], Result]:
    """Run every transfer step in a new process; check each downloaded file's sha256."""
    results: dict[tuple[str, str], Result] = {}
    for library, operation, task, arguments in transfer_steps(source, size_mib):
        moto_cpu_before = process_cpu_seconds(moto_pid)
        result = run_child(task, endpoint, *arguments)
        result["moto_cpu_seconds"] = process_cpu_seconds(moto_pid) - moto_cpu_before
        result["mib_per_second"] = size_mib / result["seconds"]
        if "--destination" in arguments:
            destination = Path(arguments[arguments.index("--destination") + 1])
            result["sha256_matches"] = sha256_of(destination) == source_sha256
            destination.unlink()
        results[library, operation] = result
        print(f"{library} {operation}: {describe(result)}", flush=True)
    return results


def describe(result: Result) -> str:
    return ", ".join(
        f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value}"
        for key, value in result.items()
    )


def markdown_tables(
    imports: dict[str, Result],
    transfers: dict[tuple[str, str], Result],
    capabilities: dict[str, Result],
    size_mib: int,
    moto_peak_rss_mib: float,
) -> str:
    lines = [
        "### Import + client creation (median of fresh processes)",
        "",
        "| library | import s | client s | total s | peak RSS MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for library, r in imports.items():
        lines.append(
            f"| {library} | {r['import_seconds']:.3f} | {r['client_seconds']:.3f} "
            f"| {r['total_seconds']:.3f} | {r['peak_rss_mib']:.0f} |"
        )
    lines += [
        "",
        f"### Transfer of {size_mib} MiB (one fresh process per row; moto on the same machine)",
        "",
        "| library | operation | wall s | MiB/s | child CPU s | peak RSS MiB "
        "| RSS before transfer MiB | moto CPU s | sha256 ok |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for (library, operation), r in transfers.items():
        lines.append(
            f"| {library} | {operation} | {r['seconds']:.2f} | {r['mib_per_second']:.1f} "
            f"| {r['cpu_seconds']:.2f} | {r['peak_rss_mib']:.0f} | {r['rss_before_mib']:.0f} "
            f"| {r['moto_cpu_seconds']:.2f} | {r.get('sha256_matches', '-')} |"
        )
    lines += ["", f"moto.server peak RSS over the whole run: {moto_peak_rss_mib:.0f} MiB", ""]
    lines += ["### Capabilities (each 'yes' was exercised against moto)", ""]
    lines += ["| capability | boto3 | obstore |", "|---|---|---|"]
    for capability in capabilities["boto3"]:
        row = [capabilities[library][capability] for library in LIBRARIES]
        lines.append(f"| {capability} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(size_mib: int, import_runs: int) -> None:
    print_environment()
    with moto_server() as (endpoint, moto_pid):
        print(f"moto.server at {endpoint} (pid {moto_pid})", flush=True)
        run_child("create-bucket", endpoint)
        imports = measure_imports(endpoint, import_runs)
        with tempfile.TemporaryDirectory(prefix="taas-storage-bench-") as folder:
            source = Path(folder) / "source.bin"
            started = time.perf_counter()
            source_sha256 = write_random_file(source, size_mib)
            took = time.perf_counter() - started
            print(f"wrote {size_mib} MiB of random bytes to {source} in {took:.1f} s", flush=True)
            transfers = measure_transfers(endpoint, moto_pid, source, source_sha256, size_mib)
        capabilities = {lib: run_child(f"capabilities-{lib}", endpoint) for lib in LIBRARIES}
        moto_peak_rss_mib = process_peak_rss_mib(moto_pid)
    print()
    print(markdown_tables(imports, transfers, capabilities, size_mib, moto_peak_rss_mib))
    if not all(r.get("sha256_matches", True) for r in transfers.values()):
        sys.exit("a downloaded file differs from the source")


# --- the children: one measurement each -----------------------------------------------------


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measured(transfer: Callable[[], None]) -> Result:
    """Wall and CPU seconds of transfer(), and this process's peak RSS before and after it."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    transfer()
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "peak_rss_mib": after.ru_maxrss / 1024,
        "rss_before_mib": before.ru_maxrss / 1024,
    }


def boto3_client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    # s3v4: botocore would otherwise presign with the legacy SigV2 query string in us-east-1.
    return boto3.client("s3", endpoint_url=endpoint, config=Config(signature_version="s3v4"))


def boto3_transfer_config() -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=PART_SIZE,
        multipart_chunksize=PART_SIZE,
        max_concurrency=MAX_CONCURRENCY,
    )


def obstore_store(endpoint: str) -> Any:
    from obstore.store import S3Store

    return S3Store(
        BUCKET,
        endpoint=endpoint,
        region=REGION,
        allow_http=True,
        client_options={"timeout": OBSTORE_TIMEOUT},
    )


def child_import_boto3(endpoint: str) -> Result:
    started = time.perf_counter()
    import boto3

    imported = time.perf_counter()
    boto3.client("s3", endpoint_url=endpoint)
    done = time.perf_counter()
    return import_result(started, imported, done)


def child_import_obstore(endpoint: str) -> Result:
    started = time.perf_counter()
    import obstore

    imported = time.perf_counter()
    obstore.store.S3Store(BUCKET, endpoint=endpoint, region=REGION, allow_http=True)
    done = time.perf_counter()
    return import_result(started, imported, done)


def import_result(started: float, imported: float, done: float) -> Result:
    return {
        "import_seconds": imported - started,
        "client_seconds": done - imported,
        "total_seconds": done - started,
        "peak_rss_mib": peak_rss_mib(),
    }


def child_create_bucket(endpoint: str) -> Result:
    boto3_client(endpoint).create_bucket(Bucket=BUCKET)
    return {"bucket": BUCKET}


def child_upload_boto3(endpoint: str, source: str, key: str, defaults: bool = False) -> Result:
    from boto3.s3.transfer import TransferConfig

    client = boto3_client(endpoint)
    config = TransferConfig() if defaults else boto3_transfer_config()
    return measured(lambda: client.upload_file(source, BUCKET, key, Config=config))


def child_download_boto3(endpoint: str, key: str, destination: str) -> Result:
    client, config = boto3_client(endpoint), boto3_transfer_config()
    return measured(lambda: client.download_file(BUCKET, key, destination, Config=config))


def child_download_boto3_one_get(endpoint: str, key: str, destination: str) -> Result:
    """One GetObject, its body streamed into the file (no Range requests)."""
    client = boto3_client(endpoint)

    def download() -> None:
        body = client.get_object(Bucket=BUCKET, Key=key)["Body"]
        with open(destination, "wb") as file:
            for chunk in body.iter_chunks(chunk_size=10 * 1000 * 1000):  # as obstore's stream
                file.write(chunk)

    return measured(download)


def child_upload_obstore(endpoint: str, source: str, key: str, defaults: bool = False) -> Result:
    import obstore

    store = obstore_store(endpoint)
    chunk_size, concurrency = (5 * MIB, 12) if defaults else (PART_SIZE, MAX_CONCURRENCY)

    def upload() -> None:
        obstore.put(store, key, Path(source), chunk_size=chunk_size, max_concurrency=concurrency)

    return measured(upload)


def child_download_obstore(endpoint: str, key: str, destination: str) -> Result:
    import obstore

    store = obstore_store(endpoint)

    def download() -> None:
        result = obstore.get(store, key)
        with open(destination, "wb") as file:
            for chunk in result.stream():  # chunks of at least 10 MB, obstore's default
                file.write(chunk)

    return measured(download)


# --- capabilities ---------------------------------------------------------------------------


def sigv4_query_signature_is_valid(url: str, method: str) -> bool:
    """Recompute a presigned URL's AWS SigV4 signature (signed header: host) from SECRET_KEY.

    moto serves a presigned URL without checking its signature, so this is the check that
    a real S3 service would make: the canonical request, the string to sign, the derived key.
    """
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    params = dict(pairs)
    if params.get("X-Amz-SignedHeaders") != "host":
        return False
    canonical_query = "&".join(
        f"{aws_uri_encode(name)}={aws_uri_encode(value)}"
        for name, value in sorted(pairs)
        if name != "X-Amz-Signature"
    )
    canonical_request = "\n".join(
        [method, parts.path, canonical_query, f"host:{parts.netloc}\n", "host", "UNSIGNED-PAYLOAD"]
    )
    scope = params["X-Amz-Credential"].split("/", 1)[1]
    request_hash = hashlib.sha256(canonical_request.encode()).hexdigest()
    string_to_sign = f"AWS4-HMAC-SHA256\n{params['X-Amz-Date']}\n{scope}\n{request_hash}"
    key = f"AWS4{SECRET_KEY}".encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, params.get("X-Amz-Signature", ""))


def aws_uri_encode(text: str) -> str:
    return quote(text, safe="-_.~")


def tampered(url: str) -> str:
    """The same URL with the signature's last hex digit changed."""
    last = url[-1]
    return url[:-1] + ("0" if last != "0" else "1")


def check_presigned_get(url: str, expected: bytes) -> str:
    import httpx

    valid = sigv4_query_signature_is_valid(url, "GET")
    response = httpx.get(url)
    forged = httpx.get(tampered(url)).status_code
    matches = response.content == expected
    ok = valid and response.status_code == 200 and matches
    return (
        f"{'yes' if ok else 'FAILED'}: SigV4 recomputed {'ok' if valid else 'WRONG'}, "
        f"GET {response.status_code}, body {'matches' if matches else 'differs'}"
        f" (moto answers a tampered signature with {forged})"
    )


def check_presigned_put(url: str, body: bytes, read_back: Callable[[], bytes]) -> str:
    import httpx

    valid = sigv4_query_signature_is_valid(url, "PUT")
    status = httpx.put(url, content=body).status_code
    stored = read_back() == body
    ok = valid and status == 200 and stored
    return (
        f"{'yes' if ok else 'FAILED'}: SigV4 recomputed {'ok' if valid else 'WRONG'}, "
        f"PUT {status}, object read back {'matches' if stored else 'differs'}"
    )


def child_capabilities_boto3(endpoint: str) -> Result:
    client = boto3_client(endpoint)
    body = b"presigned by boto3\n"
    client.put_object(Bucket=BUCKET, Key="caps/boto3-get.txt", Body=body)

    def presign(operation: str, **params: Any) -> str:
        url: str = client.generate_presigned_url(
            operation, Params={"Bucket": BUCKET, **params}, ExpiresIn=600
        )
        return url

    def read_back(key: str) -> Callable[[], bytes]:
        return lambda: bytes(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    put_key = "caps/boto3-put.txt"
    return {
        "presigned GET": check_presigned_get(presign("get_object", Key="caps/boto3-get.txt"), body),
        "presigned PUT": check_presigned_put(
            presign("put_object", Key=put_key), body, read_back(put_key)
        ),
        "presigned UploadPart": boto3_presigned_upload_part(client, presign),
        "list + abort multipart uploads": boto3_list_and_abort(client),
    }


def boto3_presigned_upload_part(client: Any, presign: Callable[..., str]) -> str:
    """Create a multipart upload, PUT its one part to a presigned URL, complete it, read it."""
    import httpx

    key, body = "caps/boto3-multipart.bin", os.urandom(MIB)
    upload_id = client.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    url = presign("upload_part", Key=key, UploadId=upload_id, PartNumber=1)
    valid = sigv4_query_signature_is_valid(url, "PUT")
    response = httpx.put(url, content=body)
    client.complete_multipart_upload(
        Bucket=BUCKET,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": response.headers["ETag"]}]},
    )
    stored = client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body
    ok = valid and response.status_code == 200 and stored
    return (
        f"{'yes' if ok else 'FAILED'}: SigV4 recomputed {'ok' if valid else 'WRONG'}, "
        f"part PUT {response.status_code}, completed object {'matches' if stored else 'differs'}"
    )


def boto3_list_and_abort(client: Any) -> str:
    key = "caps/boto3-abandoned.bin"
    upload_id = client.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]

    def listed() -> bool:
        uploads = client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
        return any(upload["UploadId"] == upload_id for upload in uploads)

    listed_before = listed()
    client.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id)
    listed_after = listed()
    ok = listed_before and not listed_after
    return (
        f"{'yes' if ok else 'FAILED'}: created upload listed {listed_before}, "
        f"listed after abort {listed_after}"
    )


def child_capabilities_obstore(endpoint: str) -> Result:
    import obstore
    from obstore.store import S3Store

    store = obstore_store(endpoint)
    body = b"presigned by obstore\n"
    obstore.put(store, "caps/obstore-get.txt", body)
    expires = timedelta(minutes=10)
    get_url = obstore.sign(store, "GET", "caps/obstore-get.txt", expires)
    put_key = "caps/obstore-put.txt"
    put_url = obstore.sign(store, "PUT", put_key, expires)

    def read_back() -> bytes:
        return bytes(obstore.get(store, put_key).bytes())

    # sign(store, method, paths, expires_in) signs a path: no query parameters such as
    # partNumber and uploadId can be added, and a '?' in the path becomes part of the key.
    part_url = obstore.sign(store, "PUT", "caps/k?partNumber=1&uploadId=x", expires)
    multipart_names = sorted(
        name
        for name in {*dir(obstore), *dir(S3Store)}
        if "multipart" in name.lower() or "abort" in name.lower()
    )
    print(f"obstore.sign{getattr(obstore.sign, '__text_signature__', '(?)')}")
    print(f"path with a query, signed: {part_url.split('?X-Amz-')[0]}")
    print(f"multipart/abort names in dir(obstore) and dir(S3Store): {multipart_names}")
    return {
        "presigned GET": check_presigned_get(get_url, body),
        "presigned PUT": check_presigned_put(put_url, body, read_back),
        "presigned UploadPart": (
            "no: sign(store, method, paths, expires_in) signs a path only (no partNumber/"
            "uploadId), and there is no call that creates a multipart upload and returns its id"
        ),
        "list + abort multipart uploads": (
            "no: no such function in obstore or on S3Store"
            + (f" (found {multipart_names})" if multipart_names else "")
            + "; put() runs its multipart upload internally"
        ),
    }


CHILDREN: dict[str, Callable[..., Result]] = {
    "create-bucket": child_create_bucket,
    "import-boto3": child_import_boto3,
    "import-obstore": child_import_obstore,
    "upload-boto3": child_upload_boto3,
    "upload-boto3-defaults": partial(child_upload_boto3, defaults=True),
    "download-boto3": child_download_boto3,
    "download-boto3-one-get": child_download_boto3_one_get,
    "upload-obstore": child_upload_obstore,
    "upload-obstore-defaults": partial(child_upload_obstore, defaults=True),
    "download-obstore": child_download_obstore,
    "capabilities-boto3": child_capabilities_boto3,
    "capabilities-obstore": child_capabilities_obstore,
}


def run_as_child(arguments: argparse.Namespace) -> None:
    options = {
        name: getattr(arguments, name)
        for name in ("source", "key", "destination")
        if getattr(arguments, name) is not None
    }
    result = CHILDREN[arguments.child](arguments.endpoint, **options)
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the transfer")
    parser.add_argument("--import-runs", type=int, default=5, help="processes per import median")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--destination", help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    ARGUMENTS = parse_arguments()
    if ARGUMENTS.child:
        run_as_child(ARGUMENTS)
    else:
        main(ARGUMENTS.size_mib, ARGUMENTS.import_runs)
