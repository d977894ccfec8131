"""Artifact store: local directory and S3 (no mocks of our own code).

The S3 tests talk HTTP to moto's S3 server on 127.0.0.1 (``s3_fixture.py``): moto is used because no real S3
(or MinIO) exists on the test machines. Failures are produced through real paths: a missing bucket, moto with
IAM auth switched on (unknown key, wrong secret), a closed port, a file that changes during the upload.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
from pathlib import Path

import pytest

from vision_pipeline import storage
from vision_pipeline.storage import (
    LocalArtifactStore,
    S3ArtifactStore,
    StorageError,
    StoredObject,
    checkpoint_key,
    export_key,
    inference_key,
    make_store,
    store_from_env,
)
from vision_pipeline_tests.s3_fixture import MOTO_ACCESS_KEY_ID, MOTO_REGION, MOTO_SECRET_ACCESS_KEY, moto_auth_enforced, moto_client

MiB = 1024 * 1024
SECRET = "do-not-leak-this-secret-0123456789"


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user AWS config or pipeline settings leak in; the pipeline home lives under tmp_path."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "VISION_PIPELINE_S3_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("VISION_PIPELINE_HOME", str(tmp_path / "home"))


def _write(path: Path, size: int, seed: int = 0) -> Path:
    """A file of ``size`` pseudo-random bytes (deterministic, not compressible)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = hashlib.sha256(str(seed).encode()).digest() * 4096  # 128 KiB
    with open(path, "wb") as fh:
        left = size
        i = 0
        while left > 0:
            chunk = hashlib.sha256(block + i.to_bytes(8, "big")).digest() + block
            fh.write(chunk[:left])
            left -= min(left, len(chunk))
            i += 1
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _s3(endpoint: str, bucket: str, **kwargs) -> S3ArtifactStore:
    kwargs.setdefault("access_key_id", MOTO_ACCESS_KEY_ID)
    kwargs.setdefault("secret_access_key", MOTO_SECRET_ACCESS_KEY)
    return S3ArtifactStore(bucket, endpoint_url=endpoint, region=MOTO_REGION, **kwargs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------- keys


def test_key_helpers() -> None:
    assert checkpoint_key(42, "best") == "checkpoints/42/best.pt"
    assert checkpoint_key("job-7", "last") == "checkpoints/job-7/last.pt"
    assert export_key(42, "onnx", "best.onnx") == "exports/42/onnx/best.onnx"
    assert inference_key(42, "images/0001.jpg") == "inference/42/images/0001.jpg"
    assert inference_key(42, Path("labels") / "0001.txt") == "inference/42/labels/0001.txt"
    with pytest.raises(StorageError, match="best, last"):
        checkpoint_key(42, "final")
    for bad in (lambda: export_key("4/2", "onnx", "m.onnx"), lambda: export_key(42, "", "m.onnx")):
        with pytest.raises(StorageError, match="invalid"):
            bad()
    for bad_rel in ("../escape.jpg", "/abs/path.jpg", "a/../../b"):
        with pytest.raises(StorageError):
            inference_key(42, bad_rel)


# --------------------------------------------------------------------------------------------- local


def test_local_round_trip(tmp_path: Path) -> None:
    src = _write(tmp_path / "in" / "best.pt", 3 * MiB + 17)
    store = LocalArtifactStore(tmp_path / "store")
    key = checkpoint_key(42, "best")

    obj = store.put_file(src, key, metadata={"job_id": "42"})

    assert isinstance(obj, StoredObject)
    assert obj.key == key
    assert obj.size == src.stat().st_size
    assert obj.sha256 == _sha256(src)
    assert obj.seconds > 0
    stored = tmp_path / "store" / "checkpoints" / "42" / "best.pt"
    assert obj.uri == stored.resolve().as_uri() == store.uri(key)
    assert obj.uri.startswith("file:///")
    assert store.exists(key) and not store.exists(checkpoint_key(42, "last"))
    assert store.metadata(key) == {"job_id": "42", "sha256": obj.sha256}
    assert not [p for p in stored.parent.iterdir() if p.name.endswith(".tmp")]

    out = store.get_file(key, tmp_path / "out" / "nested" / "best.pt")
    assert out.read_bytes() == src.read_bytes()
    assert "ok" in store.check()
    assert str(tmp_path / "store") in store.describe()


def test_local_put_tree_and_overwrite(tmp_path: Path) -> None:
    root = tmp_path / "predict"
    _write(root / "images" / "a.jpg", 1000, seed=1)
    _write(root / "labels" / "a.txt", 10, seed=2)
    store = LocalArtifactStore(tmp_path / "store")

    objs = store.put_tree(root, "inference/42")

    assert [o.key for o in objs] == ["inference/42/images/a.jpg", "inference/42/labels/a.txt"]
    assert all(o.sha256 == _sha256(root / o.key.removeprefix("inference/42/")) for o in objs)

    _write(root / "images" / "a.jpg", 500, seed=3)  # overwrite with new content
    again = store.put_file(root / "images" / "a.jpg", inference_key(42, "images/a.jpg"))
    assert again.size == 500
    assert store.get_file(again.key, tmp_path / "a.jpg").read_bytes() == (root / "images" / "a.jpg").read_bytes()


def test_local_get_detects_corrupted_copy(tmp_path: Path) -> None:
    src = _write(tmp_path / "m.onnx", 4096)
    store = LocalArtifactStore(tmp_path / "store")
    obj = store.put_file(src, export_key(1, "onnx", "m.onnx"))
    stored = Path(obj.uri.removeprefix("file://"))
    stored.write_bytes(b"garbage" + stored.read_bytes()[7:])

    with pytest.raises(StorageError, match="checksum mismatch"):
        store.get_file(obj.key, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()

    previous = tmp_path / "previous.onnx"
    previous.write_bytes(b"an earlier good copy")
    with pytest.raises(StorageError, match="checksum mismatch"):
        store.get_file(obj.key, previous)
    assert previous.read_bytes() == b"an earlier good copy"  # a bad copy never replaces the destination
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "previous.onnx", "store"]  # no temp files


def test_missing_local_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "runs" / "weights" / "best.pt"
    store = LocalArtifactStore(tmp_path / "store")
    with pytest.raises(StorageError, match="does not exist") as info:
        store.put_file(missing, checkpoint_key(1, "best"))
    assert str(missing) in str(info.value)

    with pytest.raises(StorageError, match="no artifact") as info:
        store.get_file(checkpoint_key(1, "best"), tmp_path / "x.pt")
    assert "checkpoints/1/best.pt" in str(info.value)


# ------------------------------------------------------------------------------------------------ S3


@pytest.mark.s3
def test_s3_round_trip_small(tmp_path: Path, moto_s3_endpoint: str, s3_bucket: str) -> None:
    src = _write(tmp_path / "best.pt", 100_000)
    store = _s3(moto_s3_endpoint, s3_bucket, prefix="vision/dev")
    key = checkpoint_key(42, "best")

    obj = store.put_file(src, key, metadata={"job_id": "42"})

    assert obj.key == key
    assert obj.uri == f"s3://{s3_bucket}/vision/dev/checkpoints/42/best.pt" == store.uri(key)
    assert obj.size == 100_000 and obj.sha256 == _sha256(src)
    head = moto_client(moto_s3_endpoint).head_object(
        Bucket=s3_bucket, Key="vision/dev/checkpoints/42/best.pt", ChecksumMode="ENABLED"
    )
    assert head["Metadata"] == {"job_id": "42", "sha256": obj.sha256}
    assert head["ChecksumSHA256"] == base64.b64encode(bytes.fromhex(obj.sha256)).decode()
    assert store.exists(key) and not store.exists(checkpoint_key(42, "last"))

    out = store.get_file(key, tmp_path / "out" / "best.pt")
    assert out.read_bytes() == src.read_bytes()
    assert "ok" in store.check()


@pytest.mark.s3
def test_s3_round_trip_multipart(tmp_path: Path, moto_s3_endpoint: str, s3_bucket: str) -> None:
    size = 12 * MiB + 12_345  # three parts of 5 MiB (the S3 minimum part size)
    src = _write(tmp_path / "last.pt", size)
    store = _s3(moto_s3_endpoint, s3_bucket, multipart_threshold_mb=5, multipart_chunksize_mb=5, max_concurrency=4)
    key = checkpoint_key(7, "last")

    obj = store.put_file(src, key)

    assert obj.size == size and obj.sha256 == _sha256(src)
    head = moto_client(moto_s3_endpoint).head_object(Bucket=s3_bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ETag"].strip('"').endswith("-3")  # really a multipart object
    data = src.read_bytes()
    parts = [hashlib.sha256(data[i : i + 5 * MiB]).digest() for i in range(0, size, 5 * MiB)]
    composite = base64.b64encode(hashlib.sha256(b"".join(parts)).digest()).decode()
    assert head["ChecksumSHA256"].partition("-")[0] == composite  # moto's HEAD omits AWS's "-3" suffix
    assert store.get_file(key, tmp_path / "back.pt").read_bytes() == data


@pytest.mark.s3
@pytest.mark.parametrize("size", [64 * 1024, 11 * MiB], ids=["single-part", "multipart"])
def test_s3_upload_of_a_file_changed_during_upload_fails_verification(
    tmp_path: Path, moto_s3_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """The file is rewritten after the store hashed it and before boto3 reads it: S3 keeps other bytes."""
    src = _write(tmp_path / "best.pt", size)
    store = _s3(moto_s3_endpoint, s3_bucket, multipart_threshold_mb=5, multipart_chunksize_mb=5)
    real_upload = store.client.upload_file

    def upload_after_a_concurrent_write(filename, *args, **kwargs):
        _write(Path(filename), size, seed=99)  # same size, other content
        return real_upload(filename, *args, **kwargs)

    monkeypatch.setattr(store.client, "upload_file", upload_after_a_concurrent_write)
    with pytest.raises(StorageError, match="failed verification") as info:
        store.put_file(src, checkpoint_key(1, "best"))
    assert "SHA-256" in str(info.value)


@pytest.mark.s3
def test_s3_put_tree(tmp_path: Path, moto_s3_endpoint: str, s3_bucket: str) -> None:
    root = tmp_path / "predict"
    _write(root / "images" / "a.jpg", 2000, seed=1)
    _write(root / "images" / "b.jpg", 3000, seed=2)
    store = _s3(moto_s3_endpoint, s3_bucket, prefix="p")

    objs = store.put_tree(root, "inference/9")

    assert [o.uri for o in objs] == [
        f"s3://{s3_bucket}/p/inference/9/images/a.jpg",
        f"s3://{s3_bucket}/p/inference/9/images/b.jpg",
    ]
    listed = moto_client(moto_s3_endpoint).list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert sorted(o["Key"] for o in listed) == ["p/inference/9/images/a.jpg", "p/inference/9/images/b.jpg"]


@pytest.mark.s3
def test_s3_missing_bucket(tmp_path: Path, moto_s3_endpoint: str) -> None:
    src = _write(tmp_path / "best.pt", 1000)
    store = _s3(moto_s3_endpoint, "vp-no-such-bucket")
    for action in (
        store.check,
        lambda: store.put_file(src, checkpoint_key(1, "best")),
        lambda: store.get_file(checkpoint_key(1, "best"), tmp_path / "out.pt"),
        lambda: store.exists(checkpoint_key(1, "best")),
    ):
        with pytest.raises(StorageError) as info:
            action()
        message = str(info.value)
        assert "'vp-no-such-bucket' does not exist" in message
        assert moto_s3_endpoint in message and "VISION_PIPELINE_S3_BUCKET" in message


@pytest.mark.s3
def test_s3_missing_key_and_missing_local_file(tmp_path: Path, moto_s3_endpoint: str, s3_bucket: str) -> None:
    store = _s3(moto_s3_endpoint, s3_bucket)
    with pytest.raises(StorageError, match="no artifact under key 'exports/1/onnx/m.onnx'"):
        store.get_file(export_key(1, "onnx", "m.onnx"), tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())  # no temp file left behind

    missing = tmp_path / "nowhere" / "m.onnx"
    with pytest.raises(StorageError, match="does not exist") as info:
        store.put_file(missing, export_key(1, "onnx", "m.onnx"))
    assert str(missing) in str(info.value)


@pytest.mark.s3
def test_s3_wrong_credentials(tmp_path: Path, moto_s3_endpoint: str, s3_bucket: str) -> None:
    """moto checks credentials once IAM auth is switched on; errors must name the cause, never the secret."""
    src = _write(tmp_path / "best.pt", 1000)
    key = checkpoint_key(1, "best")
    with moto_auth_enforced(moto_s3_endpoint) as valid:
        unknown = _s3(moto_s3_endpoint, s3_bucket, access_key_id="AKIAUNKNOWNKEY000000", secret_access_key=SECRET)
        for action in (unknown.check, lambda: unknown.put_file(src, key), lambda: unknown.exists(key)):
            with pytest.raises(StorageError, match=r"rejected the credentials \(InvalidAccessKeyId\)") as info:
                action()
            assert "AWS_ACCESS_KEY_ID" in str(info.value) and SECRET not in str(info.value)

        wrong_secret = _s3(
            moto_s3_endpoint, s3_bucket, access_key_id=valid["AccessKeyId"], secret_access_key=SECRET
        )
        for action in (wrong_secret.check, lambda: wrong_secret.put_file(src, key)):
            with pytest.raises(StorageError, match="SignatureDoesNotMatch") as info:
                action()
            assert "AWS_SECRET_ACCESS_KEY" in str(info.value) and SECRET not in str(info.value)

        good = _s3(
            moto_s3_endpoint,
            s3_bucket,
            access_key_id=valid["AccessKeyId"],
            secret_access_key=valid["SecretAccessKey"],
        )
        assert good.put_file(src, key).sha256 == _sha256(src)
        assert valid["SecretAccessKey"] not in good.describe()


@pytest.mark.s3
def test_s3_unreachable_endpoint(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    store = S3ArtifactStore(
        "vp-bucket", endpoint_url=endpoint, region=MOTO_REGION, access_key_id="a", secret_access_key=SECRET, max_attempts=1
    )
    src = _write(tmp_path / "best.pt", 1000)
    for action in (store.check, lambda: store.put_file(src, checkpoint_key(1, "best"))):
        with pytest.raises(StorageError, match="cannot reach the S3 endpoint") as info:
            action()
        assert endpoint in str(info.value) and "AWS_ENDPOINT_URL" in str(info.value)


@pytest.mark.s3
def test_s3_no_credentials_at_all(tmp_path: Path, moto_s3_endpoint: str, s3_bucket: str) -> None:
    """Nothing in the environment, no config file, no instance metadata: botocore finds no credentials."""
    store = S3ArtifactStore(s3_bucket, endpoint_url=moto_s3_endpoint, region=MOTO_REGION)
    with pytest.raises(StorageError, match="no usable AWS credentials.*AWS_ACCESS_KEY_ID"):
        store.put_file(_write(tmp_path / "best.pt", 100), checkpoint_key(1, "best"))


def test_s3_credentials_must_come_in_pairs() -> None:
    with pytest.raises(StorageError, match="both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        S3ArtifactStore("vp-bucket", access_key_id="AKIA0000", secret_access_key=None)


def test_composite_checksum_in_aws_format() -> None:
    """AWS reports multipart checksums as ``<base64>-N`` (moto's HEAD leaves out ``-N``): both must verify."""
    parts = [b"a" * 10, b"b" * 10, b"c" * 3]
    digest = storage._Digest(
        size=23,
        sha256=hashlib.sha256(b"".join(parts)).hexdigest(),
        part_digests=[hashlib.sha256(p).digest() for p in parts],
        part_size=10,
    )
    composite = base64.b64encode(hashlib.sha256(b"".join(digest.part_digests)).digest()).decode()
    head = {"ContentLength": 23, "Metadata": {"sha256": digest.sha256}}
    assert storage._compare_head({**head, "ChecksumSHA256": f"{composite}-3"}, digest) == []
    assert storage._compare_head({**head, "ChecksumSHA256": composite}, digest) == []
    assert storage._compare_head({**head, "ChecksumSHA256": f"{composite}-4"}, digest)
    other = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    assert storage._compare_head({**head, "ChecksumSHA256": f"{other}-3"}, digest)
    assert storage._compare_head(head, digest) is None  # no checksum: the caller falls back to the ETag


# ------------------------------------------------------------------------------------------- factory


def test_store_from_env_defaults_to_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = store_from_env()
    assert isinstance(store, LocalArtifactStore)
    assert store.root == (tmp_path / "home" / "artifacts").resolve()

    monkeypatch.setenv("VISION_PIPELINE_S3_BUCKET", "  ")  # blank counts as unset
    assert isinstance(store_from_env(), LocalArtifactStore)


@pytest.mark.s3
def test_store_from_env_picks_s3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto_s3_endpoint: str, s3_bucket: str
) -> None:
    monkeypatch.setenv("VISION_PIPELINE_S3_BUCKET", s3_bucket)
    monkeypatch.setenv("VISION_PIPELINE_S3_PREFIX", "team/dev/")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_s3_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", MOTO_REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", MOTO_ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)

    store = store_from_env()

    assert isinstance(store, S3ArtifactStore)
    assert (store.bucket, store.prefix, store.endpoint_url, store.region) == (
        s3_bucket,
        "team/dev",
        moto_s3_endpoint,
        MOTO_REGION,
    )
    assert SECRET not in store.describe() and s3_bucket in store.describe()
    obj = store.put_file(_write(tmp_path / "m.onnx", 5000), export_key(3, "onnx", "m.onnx"))
    assert obj.uri == f"s3://{s3_bucket}/team/dev/exports/3/onnx/m.onnx"

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1")  # the S3-specific variable wins
    assert store_from_env().endpoint_url == "http://127.0.0.1:1"


def test_make_store_explicit_values(tmp_path: Path) -> None:
    local = make_store(None, "", None, None, None, None, local_root=tmp_path / "arts")
    assert isinstance(local, LocalArtifactStore) and local.root == (tmp_path / "arts").resolve()
    assert isinstance(make_store("", "", "", "", "", ""), LocalArtifactStore)

    s3 = make_store("vp-bucket", "x", "http://127.0.0.1:9000", "eu-west-1", "AKIA0000", SECRET)
    assert isinstance(s3, S3ArtifactStore)
    assert s3.uri(checkpoint_key(1, "best")) == "s3://vp-bucket/x/checkpoints/1/best.pt"
    assert "eu-west-1" in s3.describe() and "http://127.0.0.1:9000" in s3.describe()
    assert SECRET not in s3.describe()
