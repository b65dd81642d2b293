"""The S3 backend: AWS S3 and every store that speaks its protocol (MinIO, Ceph RGW, R2...).

boto3 is the client: it presigns each part of a multipart upload (so workers and users send big
files straight to the store), lists and aborts unfinished uploads, and reads the standard AWS
configuration (AWS_ENDPOINT_URL, AWS_REGION, keys, profiles), so taas keeps no storage secret.
Integrity: every write carries SHA-256 checksums that the store checks (the whole object, or
each part); a store that keeps no checksum has the object read back and hashed instead.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from taas.app.core.errors import IntegrityFailure
from taas.app.storage.objects import (
    PART_BYTES,
    DirectUpload,
    ObjectInfo,
    ObjectMissing,
    ObjectRange,
    PresignedPart,
    StorageUnavailable,
    UnfinishedUpload,
    check_key,
)

READ_CHUNK_BYTES = 1024 * 1024
# Answers of a store that is down or overloaded: worth retrying later, so a 503 to our client.
_UNAVAILABLE_CODES = {
    "SlowDown",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
    "ThrottlingException",
    "500",
    "502",
    "503",
    "504",
}
_MISSING_CODES = {"NoSuchKey", "NoSuchUpload", "404", "NotFound"}
# Answers about what a client sent (parts that do not match, too small, out of order): the
# upload is refused, not worth retrying as it is.
_REFUSED_CODES = {
    "InvalidPart",
    "InvalidPartOrder",
    "EntityTooSmall",
    "BadDigest",
    "InvalidDigest",
    "InvalidRequest",
    "XAmzContentSHA256Mismatch",
}


class S3ObjectStore:
    direct = True

    def __init__(self, url: str, staging: Path, client: Any = None) -> None:
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        self.name = url
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.staging = staging
        self.client = client or make_client()
        self.probe_client: Any = client
        self.transfer = TransferConfig(
            multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, max_concurrency=4
        )

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _key(self, name: str) -> str:
        return name.removeprefix(self.prefix)

    def staging_dir(self, key: str) -> Path:
        self.staging.mkdir(parents=True, exist_ok=True)
        return self.staging

    def put_file(self, key: str, source: Path, sha256: str, *, consume: bool = False) -> None:
        extra = {"ChecksumAlgorithm": "SHA256", "Metadata": {"sha256": sha256}}
        with translated(key):
            self.client.upload_file(
                str(source), self.bucket, self._name(key), ExtraArgs=extra, Config=self.transfer
            )
        if consume:
            source.unlink(missing_ok=True)

    def get_to_file(self, key: str, destination: Path) -> None:
        # One streamed GET, a chunk held at a time (ranged GETs in parallel would buffer parts).
        with destination.open("wb") as file:
            for chunk in self.read(key, None).chunks:
                file.write(chunk)

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            with translated(key, missing=True):
                head = self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        except ObjectMissing:
            return None
        return ObjectInfo(
            key, head["ContentLength"], head["LastModified"], head["Metadata"].get("sha256")
        )

    def local_file(self, key: str) -> Path | None:
        return None

    def read(self, key: str, range_header: str | None) -> ObjectRange:
        arguments = {"Bucket": self.bucket, "Key": self._name(key)}
        if range_header:
            arguments["Range"] = range_header
        try:
            with translated(key, missing=True):
                answer = self.client.get_object(**arguments)
        except ClientError:  # only InvalidRange gets here
            size = self.stat(key)
            total = size.size_bytes if size else 0
            return ObjectRange(416, {"Content-Range": f"bytes */{total}"}, iter(()))
        headers = {"Content-Length": str(answer["ContentLength"]), "Accept-Ranges": "bytes"}
        if "ContentRange" in answer:
            headers["Content-Range"] = answer["ContentRange"]
        status = 206 if "ContentRange" in answer and range_header else 200
        return ObjectRange(status, headers, _body_chunks(answer["Body"], key))

    def delete(self, key: str) -> None:
        with translated(key):
            self.client.delete_object(Bucket=self.bucket, Key=self._name(key))

    def delete_prefix(self, prefix: str) -> int:
        for upload in self.unfinished_uploads(prefix):
            self.abort_upload(upload.key, upload.upload_id)
        names = [self._name(info.key) for info in self.list_objects(prefix)]
        for start in range(0, len(names), 1000):  # DeleteObjects takes 1,000 keys at most
            batch = [{"Key": name} for name in names[start : start + 1000]]
            with translated(prefix):
                self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
        return len(names)

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix
        )
        with translated(prefix):
            for page in pages:
                for item in page.get("Contents", []):
                    yield ObjectInfo(self._key(item["Key"]), item["Size"], item["LastModified"])

    def unfinished_uploads(self, prefix: str) -> Iterator[UnfinishedUpload]:
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix
        )
        with translated(prefix):
            for page in pages:
                for item in page.get("Uploads", []):
                    yield UnfinishedUpload(
                        self._key(item["Key"]), item["UploadId"], item["Initiated"]
                    )

    def abort_upload(self, key: str, upload_id: str) -> None:
        try:
            with translated(key, missing=True):
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self._name(key), UploadId=upload_id
                )
        except ObjectMissing:
            pass  # already completed or aborted

    def check(self) -> None:
        # One quick try: a health check must answer fast whatever the store does.
        if self.probe_client is None:
            self.probe_client = make_client(quick=True)
        with translated(f"bucket {self.bucket}"):
            self.probe_client.head_bucket(Bucket=self.bucket)

    def presign_get(self, key: str, seconds: int, filename: str | None = None) -> str:
        params = {"Bucket": self.bucket, "Key": self._name(key)}
        if filename is not None:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        url: str = self.client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=seconds
        )
        return url

    def start_direct_upload(self, key: str, part_sha256: list[str], seconds: int) -> DirectUpload:
        name = self._name(key)
        if len(part_sha256) == 1:
            checksum = _base64(part_sha256[0])
            single: dict[str, object] = {
                "Bucket": self.bucket,
                "Key": name,
                "ChecksumSHA256": checksum,
            }
            url = self.client.generate_presigned_url("put_object", Params=single, ExpiresIn=seconds)
            part = PresignedPart(1, url, {"x-amz-checksum-sha256": checksum})
            return DirectUpload(key, None, [part])
        with translated(key):
            started = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=name, ChecksumAlgorithm="SHA256"
            )
        upload_id = started["UploadId"]
        parts = []
        for number, digest in enumerate(part_sha256, start=1):
            checksum = _base64(digest)
            params: dict[str, object] = {
                "Bucket": self.bucket,
                "Key": name,
                "UploadId": upload_id,
                "PartNumber": number,
                "ChecksumSHA256": checksum,
            }
            url = self.client.generate_presigned_url(
                "upload_part", Params=params, ExpiresIn=seconds
            )
            parts.append(PresignedPart(number, url, {"x-amz-checksum-sha256": checksum}))
        return DirectUpload(key, upload_id, parts)

    def complete_direct_upload(
        self, key: str, upload_id: str | None, etags: list[str], part_sha256: list[str]
    ) -> None:
        if upload_id is None:
            return  # one PUT: the object is already whole
        parts = [
            {"PartNumber": number, "ETag": etag, "ChecksumSHA256": _base64(digest)}
            for number, (etag, digest) in enumerate(zip(etags, part_sha256, strict=True), 1)
        ]
        with translated(key, missing=True):
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self._name(key),
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )

    def verify(self, key: str, size_bytes: int, sha256: str, part_sha256: list[str]) -> None:
        """The store's own SHA-256 checksum when it keeps one (of the object, or of its parts'
        checksums for a multipart upload, each part checked by the store on arrival); else the
        object is read back and hashed here."""
        with translated(key, missing=True):
            head = self.client.head_object(
                Bucket=self.bucket, Key=self._name(key), ChecksumMode="ENABLED"
            )
        if head["ContentLength"] != size_bytes:
            raise IntegrityFailure(
                f"{key}: the store holds {head['ContentLength']} bytes, {size_bytes} were declared"
            )
        stored = head.get("ChecksumSHA256")
        if stored:
            expected = _base64(sha256) if len(part_sha256) == 1 else _composite(part_sha256)
            if stored.split("-")[0] != expected:
                raise IntegrityFailure(f"{key}: the store's SHA-256 checksum differs")
            return
        if self._hash_object(key) != sha256:
            raise IntegrityFailure(f"{key}: the bytes stored do not match sha256 {sha256}")

    def _hash_object(self, key: str) -> str:
        digest = hashlib.sha256()
        for chunk in self.read(key, None).chunks:
            digest.update(chunk)
        return digest.hexdigest()


def make_client(*, quick: bool = False) -> Any:
    """An S3 client from the standard AWS configuration. Path-style addressing where an
    endpoint is set (MinIO, Ceph and test servers seldom have per-bucket host names)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    config = Config(
        signature_version="s3v4",
        connect_timeout=2 if quick else 5,
        read_timeout=5 if quick else 60,
        retries={"mode": "standard", "max_attempts": 1 if quick else 3},
        s3={"addressing_style": "path" if endpoint else "auto"},
    )
    # AWS_REGION is the name the AWS SDKs document; boto3 itself reads AWS_DEFAULT_REGION.
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint or None, region_name=region, config=config
    )


@contextmanager
def translated(what: str, *, missing: bool = False) -> Iterator[None]:
    """The store's failures as taas's: down or throttling is StorageUnavailable (503), an
    absent object ObjectMissing where the caller asked; InvalidRange is left to read()."""
    try:
        yield
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if missing and code in _MISSING_CODES:
            raise ObjectMissing(what) from None
        if code in _UNAVAILABLE_CODES:
            raise StorageUnavailable(f"object storage is unavailable ({code}) for {what}") from None
        if code == "NoSuchBucket":
            raise StorageUnavailable(f"object storage has no such bucket ({what})") from None
        if code == "InvalidRange":
            raise
        if code in _REFUSED_CODES:
            message = error.response.get("Error", {}).get("Message", "")
            raise IntegrityFailure(
                f"object storage refused {what}: {code} {message}".strip()
            ) from None
        raise StorageUnavailable(f"object storage refused {what}: {code or error}") from None
    except BotoCoreError as error:
        raise StorageUnavailable(f"object storage is unreachable: {error}") from None


def _body_chunks(body: Any, key: str) -> Iterator[bytes]:
    try:
        with translated(key):
            yield from body.iter_chunks(READ_CHUNK_BYTES)
    finally:
        body.close()


def _base64(sha256_hex: str) -> str:
    return base64.b64encode(bytes.fromhex(sha256_hex)).decode()


def _composite(part_sha256: list[str]) -> str:
    """S3's checksum of a multipart upload: the SHA-256 of its parts' SHA-256 digests."""
    joined = b"".join(bytes.fromhex(digest) for digest in part_sha256)
    return base64.b64encode(hashlib.sha256(joined).digest()).decode()
