"""A store in an S3 bucket: AWS or any S3-compatible endpoint (MinIO, Hetzner, DigitalOcean
Spaces, Linode, Vultr, Ceph RGW).

Objects live under ``{prefix}{key}`` in ``bucket``. Uploads stream through multipart
uploads (see providers/storage/s3_writer.py); ``put_bytes`` is one PutObject.

Immutable backups: with ``lock_mode`` (GOVERNANCE or COMPLIANCE) and ``lock_seconds``,
every object written (PutObject and CreateMultipartUpload) carries an Object Lock
retention until ``now + lock_seconds``, except keys matching ``unlocked`` (glob patterns;
by default the hold markers, which must stay removable). Before the first write the store
checks that the bucket has versioning and Object Lock enabled (``versioning=True`` checks
versioning alone) and refuses to write otherwise (``InvalidStoreSettings`` naming the
bucket; nothing written). On a versioned store ``delete`` removes *every version* of the
key (the S3 permission ``s3:DeleteObjectVersion``, which only the prune identity should
have) and refuses with ``ObjectLocked``, deleting nothing, while any version is retained;
``retained_until`` says until when. The bucket itself is prepared by ``prepare_bucket``
(an administrator's identity), never by the workers.

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

import fnmatch
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
    ObjectLocked,
    ObjectNotFound,
    StoreAccessDenied,
    StoreError,
    StoreFull,
    StoreUnavailable,
)
from drfleet.providers.storage.support.s3_writer import MIN_PART_SIZE, MultipartWriter, content_md5
from drfleet.providers.storage.support.streams import ObjectStream

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
    doc. ``lock_mode``/``lock_seconds``/``unlocked``/``versioning``: see module doc.
    ``client`` replaces the boto3 client built from the settings above (endpoint,
    credential, retry and timeout settings are then ignored).

    Raises ``InvalidStoreSettings`` for an impossible setting.
    """

    def __init__(self, bucket: str, *, prefix: str = "", endpoint_url: str | None = None,
                 region: str | None = None, access_key_id: str | None = None,
                 secret_access_key: str | None = None, storage_class: str | None = None,
                 part_size: int = 8 * MiB, name: str | None = None, client: Any = None,
                 path_style: bool | None = None, conditional_put: bool = True,
                 max_attempts: int = 5, connect_timeout: float = 10.0,
                 read_timeout: float = 60.0, parts_in_flight: int = 2,
                 lock_mode: str | None = None, lock_seconds: int | None = None,
                 unlocked: tuple[str, ...] = ("datasets/*/holds/*",),
                 versioning: bool = False) -> None:
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
        if lock_mode is not None and lock_mode not in ("GOVERNANCE", "COMPLIANCE"):
            raise InvalidStoreSettings("lock_mode is GOVERNANCE or COMPLIANCE", store=self.name,
                                       lock_mode=lock_mode)
        if (lock_mode is None) != (lock_seconds is None) or (lock_seconds is not None and lock_seconds < 1):
            raise InvalidStoreSettings("an Object Lock needs both lock_mode and a positive "
                                       "lock_seconds", store=self.name)
        self.lock_mode, self.lock_seconds, self.unlocked = lock_mode, lock_seconds, tuple(unlocked)
        self.versioned = versioning or lock_mode is not None
        self._bucket_checked = False
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
        self.check_bucket(key)
        params: dict[str, Any] = {"Key": self.object_key(key), "Body": body, **self.lock_params(key)}
        if storage_class:
            params["StorageClass"] = storage_class
        if if_absent:
            params["IfNoneMatch"] = "*"
        if content_md5:
            params["ContentMD5"] = content_md5
        self.call("put_object", key, **params)

    def delete(self, key: str) -> None:
        validate_key(key, store=self.name)
        if not self.versioned:
            self.call("delete_object", key, Key=self.object_key(key))
            return
        versions = self._versions(key)
        until = self._retained_until(key, versions)
        if until is not None and until > datetime.now(timezone.utc):
            raise ObjectLocked(self.name, key, until.isoformat(), bucket=self.bucket,
                               mode=self.lock_mode)
        for version_id in versions:
            self.call("delete_object", key, Key=self.object_key(key), VersionId=version_id)

    # -- versioning and Object Lock ----------------------------------------------------

    def lock_params(self, key: str) -> dict[str, Any]:
        """The Object Lock headers of a write of ``key`` (none if unlocked)."""
        if self.lock_mode is None or any(fnmatch.fnmatchcase(key, p) for p in self.unlocked):
            return {}
        until = datetime.now(timezone.utc) + timedelta(seconds=self.lock_seconds or 0)
        return {"ObjectLockMode": self.lock_mode, "ObjectLockRetainUntilDate": until}

    def ensure_locked(self, key: str, version_id: str | None) -> None:
        """After a multipart upload: check that the new version carries the retention
        CreateMultipartUpload asked for, and set it if the provider dropped it (moto does;
        AWS does not, so there the worker needs no s3:PutObjectRetention)."""
        params = self.lock_params(key)
        if not params:
            return
        version = {"VersionId": version_id} if version_id else {}
        head = self.call("head_object", key, Key=self.object_key(key), **version)
        if head.get("ObjectLockRetainUntilDate") is None:
            self.call("put_object_retention", key, Key=self.object_key(key), **version,
                      Retention={"Mode": params["ObjectLockMode"],
                                 "RetainUntilDate": params["ObjectLockRetainUntilDate"]})

    def check_bucket(self, key: str | None = None) -> None:
        """Before the first write: refuse a bucket without the versioning/Object Lock this
        store promises (``InvalidStoreSettings``), so nothing unprotected is written."""
        if self._bucket_checked or not self.versioned:
            return
        status = self.call("get_bucket_versioning", key).get("Status")
        if status != "Enabled":
            raise InvalidStoreSettings(
                "versioning is not enabled on the bucket, so deletions could not be undone",
                store=self.name, bucket=self.bucket, versioning=status or "never enabled",
                hint="enable it with `drfleet storage prepare LOCATION` (an administrator's "
                     "credentials) or `aws s3api put-bucket-versioning`")
        if self.lock_mode is not None:
            try:
                config = self.call("get_object_lock_configuration", key)
                enabled = config.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
            except StoreError as exc:
                if exc.facts.get("code") not in ("ObjectLockConfigurationNotFoundError",
                                                  "InvalidRequest"):
                    raise
                enabled = None
            if enabled != "Enabled":
                raise InvalidStoreSettings(
                    f"the bucket does not support Object Lock, so lock mode {self.lock_mode} "
                    "cannot be set", store=self.name, bucket=self.bucket,
                    hint="create the bucket with Object Lock enabled (or enable it with "
                         "`drfleet storage prepare LOCATION`), or remove object_lock from the location")
        self._bucket_checked = True

    def retained_until(self, key: str) -> datetime | None:
        """The latest Object Lock retention date of any version of ``key`` (None: no lock)."""
        validate_key(key, store=self.name)
        if not self.versioned:
            return None
        return self._retained_until(key, self._versions(key))

    def _versions(self, key: str) -> list[str]:
        """Version ids (and delete markers) of exactly ``key``."""
        full = self.object_key(key)
        found: list[str] = []
        pages = self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=full)
        try:
            for page in pages:
                for item in (*page.get("Versions", ()), *page.get("DeleteMarkers", ())):
                    if item["Key"] == full:
                        found.append(item["VersionId"])
        except (ClientError, BotoCoreError) as exc:
            raise self.translate(exc, key, "list_object_versions") from exc
        return found

    def _retained_until(self, key: str, versions: list[str]) -> datetime | None:
        latest = None
        for version_id in versions:
            try:
                head = self.call("head_object", key, Key=self.object_key(key), VersionId=version_id)
            except (ObjectNotFound, StoreError) as exc:
                if isinstance(exc, ObjectNotFound) or exc.facts.get("http_status") in (404, 405):
                    continue  # a delete marker
                raise
            until = head.get("ObjectLockRetainUntilDate")
            if until is not None and (latest is None or until > latest):
                latest = until
        return latest

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

    def resumable_upload(self, key: str, storage_class: str | None) -> tuple[str, dict[int, tuple[str, int]]] | None:
        """The newest incomplete upload of ``key`` in ``storage_class`` and its parts
        ({number: (MD5 hex from the ETag, size)}), or None. Failures to look are not
        errors: the writer then starts a new upload."""
        full = self.object_key(key)
        wanted = storage_class or "STANDARD"
        try:
            uploads = [u for u in self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=full).get("Uploads", ())
                       if u["Key"] == full and u.get("StorageClass", "STANDARD") == wanted]
            if not uploads:
                return None
            upload = max(uploads, key=lambda u: u["Initiated"])
            parts: dict[int, tuple[str, int]] = {}
            pages = self.client.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=full, UploadId=upload["UploadId"])
            for page in pages:
                for part in page.get("Parts", ()):
                    parts[part["PartNumber"]] = (part["ETag"].strip('"'), part["Size"])
        except (ClientError, BotoCoreError):
            return None
        return upload["UploadId"], parts

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


class _ReadStream(ObjectStream):
    """The GetObject body as a file object whose read errors are storage errors."""

    def __init__(self, store: S3Store, key: str, body: Any) -> None:
        super().__init__()
        self._store, self._key, self._body = store, key, body

    def _read(self, size: int | None) -> bytes:
        try:
            return self._body.read(size)
        except BotoCoreError as exc:
            raise self._store.translate(exc, self._key, "get_object") from exc

    def _release(self) -> None:
        self._body.close()


def prepare_bucket(store: S3Store) -> list[str]:
    """Turn on what ``store`` promises, with an administrator's credentials (never a
    worker's): bucket versioning, and Object Lock when the store sets a lock mode (S3
    refuses to enable it on a bucket that already holds objects on some providers; AWS
    allows it on any versioned bucket). No default retention is set: drfleet sets the
    retention of each object as it writes it. Returns what was changed."""
    changed = []
    status = store.call("get_bucket_versioning", None).get("Status")
    if status != "Enabled":
        store.call("put_bucket_versioning", None, VersioningConfiguration={"Status": "Enabled"})
        changed.append("versioning enabled")
    if store.lock_mode is not None:
        try:
            config = store.call("get_object_lock_configuration", None)
            enabled = config.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
        except StoreError:
            enabled = None
        if enabled != "Enabled":
            store.call("put_object_lock_configuration", None,
                       ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
            changed.append("Object Lock enabled")
    store._bucket_checked = False
    store.check_bucket()
    return changed
