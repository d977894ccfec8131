"""A real S3 API on loopback for the tests: moto in server mode.

There is no real S3 (nor MinIO) on the test machines, so the S3 code paths are exercised against
``moto.server.ThreadedMotoServer`` over HTTP on 127.0.0.1: boto3 signs real requests, sends real multipart
uploads and gets real S3 error responses back. Register with ``pytest_plugins`` in conftest.py or import the
fixtures into a test module.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

MOTO_REGION = "us-east-1"
MOTO_ACCESS_KEY_ID = "testing"  # moto accepts any credentials unless auth is switched on (moto_auth_enforced)
MOTO_SECRET_ACCESS_KEY = "testing"


@pytest.fixture(scope="session")
def moto_s3_endpoint() -> Iterator[str]:
    """Start one moto server for the session on a free loopback port; yield its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def moto_client(endpoint: str, service: str = "s3", **kwargs: Any) -> Any:
    """A boto3 client for the moto server with the default (accepted) test credentials."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=MOTO_REGION,
        aws_access_key_id=kwargs.pop("aws_access_key_id", MOTO_ACCESS_KEY_ID),
        aws_secret_access_key=kwargs.pop("aws_secret_access_key", MOTO_SECRET_ACCESS_KEY),
        **kwargs,
    )


@pytest.fixture
def s3_bucket(moto_s3_endpoint: str) -> str:
    """A fresh, empty bucket on the moto server (unique name per test)."""
    name = f"vp-test-{uuid.uuid4().hex[:12]}"
    moto_client(moto_s3_endpoint).create_bucket(Bucket=name)
    return name


def _set_moto_auth(endpoint: str, initial_no_auth_action_count: str) -> None:
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=initial_no_auth_action_count.encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


@contextmanager
def moto_auth_enforced(endpoint: str) -> Iterator[dict[str, str]]:
    """Make the moto server check credentials (IAM) for the duration of the block.

    Creates an IAM user allowed ``s3:*`` first and yields its ``AccessKeyId``/``SecretAccessKey``; inside the
    block unknown keys get ``InvalidAccessKeyId`` and wrong secrets ``SignatureDoesNotMatch``, exactly as on
    AWS. Auth is switched off again on exit, so other tests on the shared server are unaffected.
    """
    iam = moto_client(endpoint, "iam")
    user = f"vp-test-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    iam.put_user_policy(
        UserName=user,
        PolicyName="s3-all",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        ),
    )
    key = iam.create_access_key(UserName=user)["AccessKey"]
    _set_moto_auth(endpoint, "0")
    try:
        yield {"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]}
    finally:
        _set_moto_auth(endpoint, "inf")
