"""Python's ``os.environ`` for the core's ``s3`` config: the Go runtime reads the process
environment once, when libdatago.so loads, so AWS_* variables set later from Python would be
missed. A config that names an ``s3://`` URL gets its ``s3`` object filled from ``os.environ``
(keys the config sets win)."""

from __future__ import annotations

import json
import os
from typing import Any

_ENV_KEYS = (
    ("endpoint_url", ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")),
    ("region", ("AWS_REGION", "AWS_DEFAULT_REGION")),
    ("profile", ("AWS_PROFILE",)),
)


def with_aws_env(text: str) -> str:
    """The config JSON ``text``, its ``s3`` object completed from ``os.environ`` when the config
    mentions ``s3://``; unchanged otherwise (or when it is not a JSON object)."""
    if "s3://" not in text.lower():
        return text
    try:
        cfg: Any = json.loads(text)
    except ValueError:
        return text  # the core reports the bad JSON
    if not isinstance(cfg, dict):
        return text
    s3 = cfg.get("s3")
    if s3 is None:
        s3 = {}
    if not isinstance(s3, dict):
        return text  # the core reports the bad value
    s3 = dict(s3)
    for key, names in _ENV_KEYS:
        if key not in s3:
            value = next((os.environ[n] for n in names if os.environ.get(n)), None)
            if value:
                s3[key] = value
    has_keys = any(k in s3 for k in ("access_key_id", "secret_access_key"))
    if not has_keys and not s3.get("anonymous") and os.environ.get("AWS_ACCESS_KEY_ID"):
        s3["access_key_id"] = os.environ["AWS_ACCESS_KEY_ID"]
        s3["secret_access_key"] = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
        if os.environ.get("AWS_SESSION_TOKEN"):
            s3["session_token"] = os.environ["AWS_SESSION_TOKEN"]
    if not s3:
        return text
    cfg["s3"] = s3
    return json.dumps(cfg)
