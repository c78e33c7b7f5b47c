"""Datasources in object storage: ``s3://bucket/prefix`` roots (AWS S3 and S3-compatible stores:
MinIO, Cloudflare R2, GCS's S3 interoperability endpoint), read through boto3.

A bucket root is listed with ListObjectsV2 (boto3's paginator) and every file is read through a
presigned GET URL (AWS Signature V4, signed by botocore): the scan's ranged header GETs,
``download_files``, blobs, and the db source's ``image_direct_url`` (so the Go core downloads
straight from the bucket, through its HTTP layer with retries, Range resume and a byte budget).

Credentials and endpoint come from boto3's standard places (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, ``AWS_PROFILE`` and the shared credentials
file, ``AWS_REGION``, ``AWS_ENDPOINT_URL``); without any credentials requests are unsigned
(public buckets). :func:`enable_s3_bucket_downloader` installs a client of your own (DagsHub's
switch of the same name); :func:`enable_gcs_bucket_downloader` one for ``gs://`` roots through
GCS's S3 interoperability endpoint.
"""

from __future__ import annotations

import os
import threading
from typing import Any

#: URL forms a datasource root may take, for error messages.
SUPPORTED = (
    "a local folder, http(s)://host/prefix/, s3://bucket/prefix "
    "(gs://bucket/prefix after enable_gcs_bucket_downloader())"
)

GCS_S3_ENDPOINT = "https://storage.googleapis.com"
PRESIGN_EXPIRY_S = 3600

_lock = threading.Lock()
_clients: dict[str, Any] = {}  # scheme -> boto3 S3 client (installed or built on first use)
_gcs_enabled = False


def scheme_of(root: str) -> str | None:
    """The URL scheme of ``root`` in lower case (``"s3"``), or None for a plain path."""
    head, sep, _ = root.partition("://")
    if not sep or "/" in head or not head:
        return None
    return head.lower()


def is_bucket(root: str) -> bool:
    """True when ``root`` is an object storage URL datago reads (``s3://``, or ``gs://`` once
    :func:`enable_gcs_bucket_downloader` ran)."""
    s = scheme_of(root)
    return s == "s3" or (s == "gs" and _gcs_enabled)


def check_scheme(root: str) -> None:
    """Refuse a root whose URL scheme datago does not read.

    Raises:
        ValueError: an unknown scheme (``hdfs://``, ``gs://`` without
            :func:`enable_gcs_bucket_downloader`), naming the root and the supported forms.
    """
    s = scheme_of(root)
    if s is None or s in ("http", "https", "file") or is_bucket(root):
        return
    hint = ""
    if s in ("gs", "gcs"):
        hint = (
            "; for Google Cloud Storage call datago.engine.enable_gcs_bucket_downloader() (HMAC keys in "
            f"AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) or use s3:// with AWS_ENDPOINT_URL={GCS_S3_ENDPOINT}"
        )
    raise ValueError(f"unsupported datasource root {root!r}: datago reads {SUPPORTED}{hint}")


def split(root: str) -> tuple[str, str]:
    """``(bucket, key)`` of ``s3://bucket/key``.

    Raises:
        ValueError: no bucket.
    """
    rest = root.split("://", 1)[1]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"invalid bucket URL {root!r}: no bucket (expected s3://bucket/prefix)")
    return bucket, key


def normalize_root(root: str) -> str:
    """``scheme://bucket/prefix/`` (the prefix ends with ``/`` unless empty), after checking that
    the bucket answers.

    Raises:
        FileNotFoundError: the bucket does not exist.
        PermissionError: the bucket refuses these credentials (the S3 error code is named).
        OSError: wrong region, endpoint unreachable, other S3 errors.
        ValueError: no bucket in the URL.
    """
    scheme = scheme_of(root) or "s3"
    bucket, key = split(root)
    if key and not key.endswith("/"):
        key += "/"
    norm = f"{scheme}://{bucket}/{key}"
    client = get_client(scheme)
    try:
        client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    except Exception as e:
        raise translate(e, norm) from e
    return norm


def enable_s3_bucket_downloader(client: Any = None) -> None:
    """Read ``s3://`` datasources with ``client`` (a boto3 S3 client), or with a client built
    from the environment (None). Reading straight from the bucket is the default already; this
    is DagsHub's switch of the same name, and the way to pass a client of your own (endpoint,
    credentials, retries)."""
    with _lock:
        _clients["s3"] = client if client is not None else _default_client("s3")


def enable_gcs_bucket_downloader(client: Any = None) -> None:
    """Accept ``gs://bucket/prefix`` roots and read them through GCS's S3 interoperability
    endpoint: with ``client`` (a boto3 S3 client), or one built for
    ``https://storage.googleapis.com`` with the HMAC keys in ``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY`` (None). DagsHub's switch of the same name."""
    global _gcs_enabled
    with _lock:
        _clients["gs"] = client if client is not None else _default_client("gs")
        _gcs_enabled = True


def reset_clients() -> None:
    """Forget installed and cached clients (the next use builds them from the environment)."""
    global _gcs_enabled
    with _lock:
        _clients.clear()
        _gcs_enabled = False


def get_client(scheme: str = "s3") -> Any:
    """The boto3 S3 client for ``scheme`` (built from the environment on first use)."""
    with _lock:
        if scheme not in _clients:
            _clients[scheme] = _default_client(scheme)
        return _clients[scheme]


def _default_client(scheme: str) -> Any:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    session = boto3.session.Session()
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if scheme == "gs":
        endpoint = GCS_S3_ENDPOINT
    addressing = os.environ.get("DATAGO_S3_ADDRESSING_STYLE", "auto")
    cfg = Config(
        signature_version="s3v4",
        retries={"max_attempts": 10, "mode": "standard"},  # 5xx, 429, SlowDown, with backoff
        s3={"addressing_style": addressing},
        max_pool_connections=32,
    )
    if session.get_credentials() is None:
        cfg = cfg.merge(Config(signature_version=UNSIGNED))  # no credentials: a public bucket
    return session.client("s3", endpoint_url=endpoint, config=cfg)


def list_keys(root: str) -> list[str]:
    """Paths (relative to the prefix) of every object below a normalized bucket root, sorted;
    ListObjectsV2 pages are followed; folder markers (keys ending with ``/``) and hidden files
    (a part starting with ``.``, as in a local folder) are left out.

    Raises:
        FileNotFoundError, PermissionError, OSError: as :func:`normalize_root`.
    """
    scheme = scheme_of(root) or "s3"
    bucket, prefix = split(root)
    client = get_client(scheme)
    out: list[str] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", ()):
                rel = obj["Key"][len(prefix) :]
                if rel and not rel.endswith("/") and not any(p.startswith(".") for p in rel.split("/")):
                    out.append(rel)
    except Exception as e:
        raise translate(e, root) from e
    out.sort()
    return out


def presign(root: str, rel: str, expires_s: int = PRESIGN_EXPIRY_S) -> str:
    """A URL that GETs ``rel`` below a normalized bucket root for ``expires_s`` seconds (SigV4
    query signature; unsigned when the client has no credentials). No request is sent."""
    scheme = scheme_of(root) or "s3"
    bucket, prefix = split(root)
    return str(
        get_client(scheme).generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": prefix + rel}, ExpiresIn=expires_s
        )
    )


_DENIED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
    "InvalidToken",
    "ExpiredToken",
}
_REGION = {"AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException"}


def translate(exc: BaseException, url: str) -> OSError | ValueError:
    """An S3 failure as a builtin exception naming ``url`` and the S3 error code:
    FileNotFoundError (NoSuchBucket, NoSuchKey), PermissionError (403, AccessDenied,
    InvalidAccessKeyId, SignatureDoesNotMatch, no credentials), OSError (wrong region, endpoint
    unreachable, anything else)."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        msg = str(err.get("Message", "") or "")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        region = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region", "")
        key = err.get("Key")
        what = url + (f" (key {key})" if key and not url.endswith(str(key)) else "")
        detail = f"{code}: {msg}" if msg else code
        if code in ("NoSuchBucket", "NoSuchKey") or (status == 404 and code in ("404", "NotFound", "")):
            return FileNotFoundError(f"{what}: does not exist (HTTP {status} {detail})")
        if code in _REGION or status == 301:
            where = f"; the bucket is in {region}" if region else ""
            return OSError(f"{what}: wrong region (HTTP {status} {detail}){where}: set AWS_REGION")
        if status in (401, 403) or code in _DENIED:
            return PermissionError(
                f"{what}: access denied (HTTP {status} {detail}); check AWS_ACCESS_KEY_ID / AWS_PROFILE"
            )
        return OSError(f"{what}: HTTP {status} {detail}")
    if isinstance(exc, NoCredentialsError):
        return PermissionError(f"{url}: no credentials (set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE)")
    if isinstance(exc, EndpointConnectionError):
        return OSError(f"{url}: cannot reach the S3 endpoint: {exc}")
    if isinstance(exc, (OSError, ValueError)):
        return exc
    return OSError(f"{url}: {exc}")
