"""A real S3 server for the tests: moto_server (PyPI ``moto[server]``, installed by build.sh)
started on a free 127.0.0.1 port, or ``$DATAGO_TEST_S3_ENDPOINT`` (with
``$DATAGO_TEST_S3_ACCESS_KEY`` / ``$DATAGO_TEST_S3_SECRET_KEY``, e.g. MinIO started by
scripts/test_minio.sh). A missing server fails the tests, never skips them."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from itertools import count
from pathlib import Path
from typing import Any

REGION = "us-east-1"
_seq = count()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class S3Server:
    """An S3 endpoint on 127.0.0.1 with valid keys (``endpoint``, ``key``, ``secret``).

    ``auth=True`` enforces SigV4 (moto checks signatures and keys once its first unsigned calls,
    used here to create an IAM user and its keys, are spent)."""

    def __init__(self, auth: bool = False) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        ext = os.environ.get("DATAGO_TEST_S3_ENDPOINT")
        if ext:
            self.endpoint = ext.rstrip("/")
            self.key = os.environ.get("DATAGO_TEST_S3_ACCESS_KEY", "testing-key")
            self.secret = os.environ.get("DATAGO_TEST_S3_SECRET_KEY", "testing-secret")
            return
        exe = shutil.which("moto_server")
        if exe is None:
            raise RuntimeError(
                "moto_server not found: pip install 'moto[server]' (build.sh does), or set DATAGO_TEST_S3_ENDPOINT"
            )
        port = free_port()
        env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
        if auth:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
        self.proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.endpoint = f"http://127.0.0.1:{port}"
        import httpx  # the engine extra's client; imported here so that conftest loads without it (wheel check)

        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(self.endpoint + "/moto-api/", timeout=2)
                break
            except httpx.HTTPError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start on {self.endpoint}") from None
                time.sleep(0.1)
        self.key, self.secret = "testing-key", "testing-secret"
        if auth:
            iam = self.client("iam", "a", "b")
            iam.create_user(UserName="datago")
            k = iam.create_access_key(UserName="datago")["AccessKey"]
            policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
            iam.put_user_policy(UserName="datago", PolicyName="all", PolicyDocument=json.dumps(policy))
            self.key, self.secret = k["AccessKeyId"], k["SecretAccessKey"]

    def client(self, service: str = "s3", key: str | None = None, secret: str | None = None) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=key or self.key,
            aws_secret_access_key=secret or self.secret,
        )

    def env(self) -> dict[str, str]:
        """The AWS_* environment that points boto3 and datago at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_REGION": REGION,
        }

    def new_bucket(self, files: dict[str, bytes] | None = None) -> str:
        """A fresh bucket holding ``files`` (key -> bytes)."""
        name = f"datago-{os.getpid()}-{next(_seq)}"
        s3 = self.client()
        s3.create_bucket(Bucket=name)
        for key, data in (files or {}).items():
            s3.put_object(Bucket=name, Key=key, Body=data)
        return name

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def folder_files(root: Path, prefix: str) -> dict[str, bytes]:
    """{prefix + relative path: bytes} of every file under ``root``."""
    return {prefix + p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
