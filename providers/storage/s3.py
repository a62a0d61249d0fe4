"""A store in an S3 bucket: AWS or any S3-compatible endpoint (MinIO, Hetzner, DigitalOcean
Spaces, Linode, Vultr, Ceph RGW).

Objects live under ``{prefix}{key}`` in ``bucket``. Uploads stream through multipart
uploads (see providers/storage/s3_writer.py); ``put_bytes`` is one PutObject.

``put_bytes(if_absent=True)`` sends ``If-None-Match: *``, which AWS S3, MinIO and moto
honour atomically. For a provider that ignores the header (it would silently overwrite),
pass ``conditional_put=False``: the store then does HeadObject + PutObject, and two
writers racing on the same key can both succeed (the last one wins).

Errors: NoSuchKey/404 -> ``ObjectNotFound``; AccessDenied/403/bad credentials ->
``StoreAccessDenied``; 412 -> ``ObjectExists``; InvalidObjectState -> ``ObjectArchived``;
507/quota codes -> ``StoreFull``; connection failures, timeouts and 5xx/SlowDown that
remain after botocore's own retries (standard mode, ``max_attempts``) -> ``StoreUnavailable``;
anything else -> ``StoreError``. Errors name store, key, bucket, endpoint and the S3 error
code, never credentials.
"""

from __future__ import annotations

import io
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, BinaryIO, Iterator, NamedTuple

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, IncompleteReadError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError

from drfleet.providers.storage.base import ObjectInfo, ObjectWriter, Store, validate_key, validate_prefix
from drfleet.providers.storage.errors import (
    InvalidStoreSettings,
    ObjectArchived,
    ObjectExists,
    ObjectNotFound,
    StoreAccessDenied,
    StoreError,
    StoreFull,
    StoreUnavailable,
)
from drfleet.providers.storage.support.s3_writer import MIN_PART_SIZE, MultipartWriter, content_md5

MiB = 1 << 20
_DENIED = {"AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch",
           "InvalidToken", "ExpiredToken", "AccountProblem", "InvalidSecurity"}
_FULL = {"QuotaExceeded", "XMinioStorageFull", "InsufficientStorage", "XMinioAdminBucketQuotaExceeded"}
_TRANSIENT = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable",
              "RequestTimeTooSkewed", "ConditionalRequestConflict", "OperationAborted"}
_NOT_FOUND = {"NoSuchKey", "NotFound", "404"}
_SESSION = boto3.session.Session()
_SESSION_LOCK = threading.Lock()


class IncompleteUpload(NamedTuple):
    """A multipart upload that was started but neither completed nor aborted."""

    key: str
    upload_id: str
    initiated: datetime


class S3Store(Store):
    """Objects in ``bucket`` under ``prefix``.

    ``endpoint_url``/``region`` pick the provider (None: AWS and the usual boto3 lookup);
    ``access_key_id``/``secret_access_key`` default to boto3's credential chain and are
    never shown in messages or ``repr``. ``path_style`` defaults to True when an
    ``endpoint_url`` is given (MinIO and most S3-compatible providers want it).
    ``storage_class`` is the default tier for writes. ``part_size`` (at least 5 MiB) is the
    multipart part size, and a writer holds at most ``1 + parts_in_flight`` parts in memory.
    botocore retries each request itself (standard mode, ``max_attempts`` in all, with the
    given timeouts) before ``StoreUnavailable`` is raised. ``conditional_put``: see module
    doc. ``client`` replaces the boto3 client built from the settings above (endpoint,
    credential, retry and timeout settings are then ignored).

    Raises ``InvalidStoreSettings`` for an impossible setting.
    """

    def __init__(self, bucket: str, *, prefix: str = "", endpoint_url: str | None = None,
                 region: str | None = None, access_key_id: str | None = None,
                 secret_access_key: str | None = None, storage_class: str | None = None,
                 part_size: int = 8 * MiB, name: str | None = None, client: Any = None,
                 path_style: bool | None = None, conditional_put: bool = True,
                 max_attempts: int = 5, connect_timeout: float = 10.0,
                 read_timeout: float = 60.0, parts_in_flight: int = 2) -> None:
        prefix = prefix.strip("/")
        self.bucket = bucket
        self.prefix = prefix + "/" if prefix else ""
        self.name = name or f"s3:{bucket}/{self.prefix}"
        if not bucket:
            raise InvalidStoreSettings("an S3 store needs a bucket", store=self.name)
        if prefix:
            validate_key(prefix, store=self.name)
        if part_size < MIN_PART_SIZE:
            raise InvalidStoreSettings("part_size is below S3's 5 MiB minimum", store=self.name,
                                       part_size=part_size)
        if parts_in_flight < 1:
            raise InvalidStoreSettings("parts_in_flight must be at least 1", store=self.name)
        self.storage_class = storage_class
        self.part_size = part_size
        self.parts_in_flight = parts_in_flight
        self.conditional_put = conditional_put
        self._secrets = tuple(s for s in (access_key_id, secret_access_key) if s and len(s) >= 4)
        if client is None:
            if path_style is None:
                path_style = endpoint_url is not None
            config = Config(
                region_name=region, connect_timeout=connect_timeout, read_timeout=read_timeout,
                retries={"mode": "standard", "total_max_attempts": max_attempts},
                s3={"addressing_style": "path" if path_style else "auto"},
                max_pool_connections=max(10, parts_in_flight + 2),
                # Only what the operation requires: the newer default CRC trailers break
                # several S3-compatible providers. Parts carry Content-MD5 instead.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required")
            with _SESSION_LOCK:  # sessions cache parsed service models, but are not thread-safe
                client = _SESSION.client(
                    "s3", endpoint_url=endpoint_url, aws_access_key_id=access_key_id,
                    aws_secret_access_key=secret_access_key, config=config)
        self.client = client
        self.endpoint = client.meta.endpoint_url

    def __repr__(self) -> str:
        return (f"S3Store(name={self.name!r}, bucket={self.bucket!r}, prefix={self.prefix!r}, "
                f"endpoint={self.endpoint!r})")

    # -- writes ------------------------------------------------------------------------

    def writer(self, key: str, *, storage_class: str | None = None) -> ObjectWriter:
        validate_key(key, store=self.name)
        return MultipartWriter(self, key, storage_class or self.storage_class)

    def put_bytes(self, key: str, data: bytes | bytearray | memoryview, *,
                  storage_class: str | None = None, if_absent: bool = False) -> ObjectInfo:
        validate_key(key, store=self.name)
        if isinstance(data, memoryview):
            data = data.tobytes()
        if if_absent and not self.conditional_put and self.exists(key):
            raise ObjectExists(self.name, key, bucket=self.bucket, endpoint=self.endpoint)
        self.put_object(key, data, storage_class or self.storage_class,
                        if_absent=if_absent and self.conditional_put,
                        content_md5=content_md5(data))
        return ObjectInfo(key, len(data))

    def put_object(self, key: str, body: bytes | bytearray, storage_class: str | None, *,
                   if_absent: bool = False, content_md5: str | None = None) -> None:
        """One PutObject of an already validated key (used by ``put_bytes`` and writers)."""
        params: dict[str, Any] = {"Key": self.object_key(key), "Body": body}
        if storage_class:
            params["StorageClass"] = storage_class
        if if_absent:
            params["IfNoneMatch"] = "*"
        if content_md5:
            params["ContentMD5"] = content_md5
        self.call("put_object", key, **params)

    def delete(self, key: str) -> None:
        validate_key(key, store=self.name)
        self.call("delete_object", key, Key=self.object_key(key))

    # -- reads -------------------------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        validate_key(key, store=self.name)
        response = self.call("get_object", key, Key=self.object_key(key))
        return _ReadStream(self, key, response["Body"])  # type: ignore[return-value]

    def stat(self, key: str) -> ObjectInfo:
        validate_key(key, store=self.name)
        response = self.call("head_object", key, Key=self.object_key(key))
        return ObjectInfo(key, response["ContentLength"])

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix, store=self.name)
        return self._list(prefix)

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        strip = len(self.prefix)
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix)
        try:
            for page in pages:
                for obj in page.get("Contents", ()):
                    yield ObjectInfo(obj["Key"][strip:], obj["Size"])
        except (ClientError, BotoCoreError) as exc:
            raise self.translate(exc, None, "list_objects_v2") from exc

    # -- incomplete multipart uploads --------------------------------------------------

    def list_incomplete_uploads(self) -> list[IncompleteUpload]:
        """Multipart uploads under this store's prefix that were never completed or aborted
        (left by killed processes, or by aborts that failed while the endpoint was down)."""
        strip = len(self.prefix)
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self.prefix)
        try:
            return [IncompleteUpload(u["Key"][strip:], u["UploadId"], u["Initiated"])
                    for page in pages for u in page.get("Uploads", ())]
        except (ClientError, BotoCoreError) as exc:
            raise self.translate(exc, None, "list_multipart_uploads") from exc

    def abort_incomplete_uploads(self, older_than_seconds: float = 0) -> int:
        """Abort incomplete uploads initiated more than ``older_than_seconds`` ago (by the
        server's clock, so leave a margin for skew and for uploads still running) and
        return how many were aborted. A bucket lifecycle rule
        (AbortIncompleteMultipartUpload) does the same on the provider's side."""
        cutoff = datetime.now(timezone.utc) - timedelta(seconds=older_than_seconds)
        aborted = 0
        for upload in self.list_incomplete_uploads():
            if upload.initiated <= cutoff:
                self.abort_upload(upload.key, upload.upload_id)
                aborted += 1
        return aborted

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort one multipart upload; an upload that is already gone is fine."""
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.object_key(key),
                                               UploadId=upload_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise self.translate(exc, key, "abort_multipart_upload") from exc
        except BotoCoreError as exc:
            raise self.translate(exc, key, "abort_multipart_upload") from exc

    # -- plumbing ----------------------------------------------------------------------

    def object_key(self, key: str) -> str:
        return self.prefix + key

    def call(self, method: str, key: str | None, **params: Any) -> Any:
        """Call a client method on this bucket, translating botocore errors."""
        try:
            return getattr(self.client, method)(Bucket=self.bucket, **params)
        except (ClientError, BotoCoreError) as exc:
            raise self.translate(exc, key, method) from exc

    def translate(self, exc: Exception, key: str | None, operation: str) -> StoreError:
        """Map a botocore exception to the storage error it means (see module doc)."""
        facts: dict[str, Any] = {"bucket": self.bucket, "endpoint": self.endpoint,
                                 "operation": operation}
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            reason = self._redact(f"{code}: {error.get('Message', '')}".rstrip(": "))
            facts.update(code=code or None, http_status=status)
            if code in _NOT_FOUND and key is not None:
                return ObjectNotFound(self.name, key, **facts)
            if code == "NoSuchBucket":
                return StoreError("the bucket does not exist", store=self.name, key=key,
                                  hint="create the bucket or fix the bucket name", **facts)
            if code == "PreconditionFailed" or status == 412:
                return ObjectExists(self.name, key or "", **facts)
            if code == "InvalidObjectState":
                return ObjectArchived(self.name, key or "", **facts)
            if code in _DENIED or status in (401, 403):
                return StoreAccessDenied(self.name, key, reason, **facts)
            if code in _FULL or status == 507:
                return StoreFull(self.name, key, **facts)
            if code in _TRANSIENT or (status or 0) >= 500:
                return StoreUnavailable(self.name, key, reason, **facts)
            return StoreError(f"S3 request failed: {reason}", store=self.name, key=key, **facts)
        if isinstance(exc, (BotoConnectionError, HTTPClientError, IncompleteReadError)):
            return StoreUnavailable(self.name, key, self._redact(str(exc)), **facts)
        if isinstance(exc, NoCredentialsError):
            return StoreAccessDenied(self.name, key, "no S3 credentials are configured", **facts)
        return StoreError(f"S3 client error: {self._redact(str(exc))}", store=self.name,
                          key=key, **facts)

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


class _ReadStream(io.RawIOBase):
    """The GetObject body as a file object whose read errors are storage errors."""

    def __init__(self, store: S3Store, key: str, body: Any) -> None:
        super().__init__()
        self._store, self._key, self._body = store, key, body

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("read from a closed stream")
        try:
            return self._body.read(None if size is None or size < 0 else size)
        except BotoCoreError as exc:
            raise self._store.translate(exc, self._key, "get_object") from exc

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()
