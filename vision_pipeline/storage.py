"""Artifact store for checkpoints, exports and inference outputs: a local directory or an S3 bucket.

Plain Python (no Dagster, no ClearML): the CLI, the Dagster resources and the tests all use it.

Key scheme (inherited from the predecessor platform)::

    checkpoints/{job_id}/{best|last}.pt        checkpoint_key(job_id, "best")
    exports/{job_id}/{format}/{filename}       export_key(job_id, "onnx", "best.onnx")
    inference/{job_id}/{relative path}         inference_key(job_id, "images/0001.jpg")

Keys are always relative, ``/``-separated and free of ``.``/``..`` segments; the S3 store prepends its
optional prefix, the local store resolves them below its root.

Every failure is raised as :class:`StorageError` with one message that says what is wrong and how to fix
it. Secret values never appear in a message.

Pick a store with :func:`store_from_env` (reads the environment when called) or :func:`make_store`
(explicit values, e.g. from a Dagster resource configured with ``dg.EnvVar``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from vision_pipeline import settings

__all__ = [
    "ArtifactStore",
    "LocalArtifactStore",
    "S3ArtifactStore",
    "StorageError",
    "StoredObject",
    "checkpoint_key",
    "export_key",
    "inference_key",
    "make_store",
    "store_from_env",
]

log = logging.getLogger(__name__)

MiB = 1024 * 1024
_COPY_BUFFER = 8 * MiB
CHECKPOINT_TYPES = ("best", "last")
_LOCAL_META_DIR = ".vp-meta"  # sidecar metadata of the local store, never a valid key


class StorageError(RuntimeError):
    """Any artifact-store failure; the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class StoredObject:
    """One stored artifact.

    ``key`` is the logical key (without the S3 prefix), ``uri`` the full location (``file:///...`` or
    ``s3://bucket/prefix/key``), ``size`` in bytes, ``sha256`` the hex digest of the content and
    ``seconds`` the wall time of the whole ``put_file`` call (hashing, transfer and verification).
    """

    key: str
    uri: str
    size: int
    sha256: str
    seconds: float


# --------------------------------------------------------------------------------------------- keys


def _segment(value: object, what: str) -> str:
    text = str(value).strip()
    if not text or text in (".", "..") or "/" in text or "\\" in text or "\x00" in text:
        raise StorageError(f"invalid {what} {value!r} for an artifact key: use a non-empty name without '/' or '\\'")
    return text


def normalize_key(key: str) -> str:
    """Validate ``key`` and return it in canonical form (``a/b/c``, no leading or doubled slashes)."""
    if not isinstance(key, str) or not key.strip():
        raise StorageError(f"invalid artifact key {key!r}: use a non-empty relative path such as 'checkpoints/42/best.pt'")
    if "\\" in key or "\x00" in key:
        raise StorageError(f"invalid artifact key {key!r}: use '/' as the separator, no backslashes or NUL bytes")
    parts = [p for p in key.split("/") if p]
    if key.startswith("/") or any(p in (".", "..") for p in parts):
        raise StorageError(f"invalid artifact key {key!r}: keys are relative paths without '.' or '..' segments")
    if parts[0] == _LOCAL_META_DIR:
        raise StorageError(f"invalid artifact key {key!r}: the top-level name {_LOCAL_META_DIR!r} is reserved")
    return "/".join(parts)


def checkpoint_key(job_id: object, type: str) -> str:  # noqa: A002 - name given by the key scheme
    """``checkpoints/{job_id}/{type}.pt`` with ``type`` in ``best``/``last``."""
    if type not in CHECKPOINT_TYPES:
        raise StorageError(f"invalid checkpoint type {type!r}: use one of {', '.join(CHECKPOINT_TYPES)}")
    return f"checkpoints/{_segment(job_id, 'job id')}/{type}.pt"


def export_key(job_id: object, fmt: str, filename: str) -> str:
    """``exports/{job_id}/{format}/{filename}``."""
    return f"exports/{_segment(job_id, 'job id')}/{_segment(fmt, 'export format')}/{_segment(filename, 'file name')}"


def inference_key(job_id: object, relpath: str | os.PathLike[str]) -> str:
    """``inference/{job_id}/{relative path}``; ``relpath`` may contain sub-directories."""
    rel = PurePosixPath(os.fspath(relpath).replace("\\", "/"))
    if rel.is_absolute():
        raise StorageError(f"invalid inference path {str(relpath)!r}: pass a path relative to the inference output folder")
    return normalize_key(f"inference/{_segment(job_id, 'job id')}/{rel.as_posix()}")


# ------------------------------------------------------------------------------------------ hashing


@dataclass
class _Digest:
    size: int
    sha256: str  # hex, whole file
    part_digests: list[bytes]  # raw sha256 of each part when part_size was given
    part_size: int | None


def _sha256_range(fd: int, start: int, length: int) -> bytes:
    digest = hashlib.sha256()
    end = start + length
    while start < end:
        block = os.pread(fd, min(_COPY_BUFFER, end - start), start)
        if not block:
            break  # truncated meanwhile: the size check and S3's checksum will catch it
        digest.update(block)
        start += len(block)
    return digest.digest()


def _hash_file(path: Path, part_size: int | None = None) -> _Digest:
    """The whole-file sha256 and, with ``part_size``, the sha256 of each ``part_size`` part.

    The part digests are computed by worker threads while this thread hashes the whole file (hashlib
    releases the GIL), so a multipart file costs about one hashing pass of wall time instead of two.
    """
    whole = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as fh:
        fd = fh.fileno()
        total = os.fstat(fd).st_size
        futures = []
        pool = None
        if part_size and total:
            from concurrent.futures import ThreadPoolExecutor

            n_parts = -(-total // part_size)
            pool = ThreadPoolExecutor(max_workers=max(1, min(n_parts, (os.cpu_count() or 2) - 1, 4)))
            futures = [pool.submit(_sha256_range, fd, off, min(part_size, total - off)) for off in range(0, total, part_size)]
        try:
            buf = bytearray(_COPY_BUFFER)
            view = memoryview(buf)
            while n := fh.readinto(buf):
                whole.update(view[:n])
                size += n
            parts = [f.result() for f in futures]
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
    if part_size and size != total:
        # The file changed size while it was read: the part layout is unknown; upload verification will fail.
        parts = []
    return _Digest(size=size, sha256=whole.hexdigest(), part_digests=parts, part_size=part_size)


def _require_file(local: Path) -> Path:
    path = Path(local)
    if not path.exists():
        raise StorageError(f"local file {str(path)!r} does not exist: check the path (it must be written before it is stored)")
    if not path.is_file():
        raise StorageError(f"local path {str(path)!r} is not a regular file: pass a file, or use put_tree for a directory")
    if not os.access(path, os.R_OK):
        raise StorageError(f"local file {str(path)!r} is not readable: fix its permissions")
    return path


def _check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (metadata or {}).items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise StorageError(f"metadata must map str to str, got {k!r}: {type(v).__name__}; convert values with str()")
        if not k or not k.isascii() or not v.isascii():
            raise StorageError(f"metadata entry {k!r} is empty or not ASCII: S3 user metadata only carries ASCII text")
        out[k.lower()] = v
    if "sha256" in out:
        raise StorageError("metadata key 'sha256' is reserved: the store computes and records it itself")
    return out


def _tree_items(local_dir: Path, prefix: str) -> list[tuple[Path, str]]:
    root = Path(local_dir)
    if not root.is_dir():
        raise StorageError(f"local directory {str(root)!r} does not exist or is not a directory: check the path")
    base = normalize_key(prefix)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return [(p, f"{base}/{p.relative_to(root).as_posix()}") for p in files]


# ---------------------------------------------------------------------------------------- interface


class ArtifactStore(ABC):
    """Where checkpoints, exports and inference outputs are kept."""

    @abstractmethod
    def put_file(self, local: Path, key: str, *, metadata: dict[str, str] | None = None) -> StoredObject:
        """Store ``local`` under ``key`` (overwriting), verify it, and describe what was stored."""

    def put_tree(self, local_dir: Path, prefix: str) -> list[StoredObject]:
        """Store every regular file below ``local_dir`` as ``{prefix}/{relative path}``; results in sorted order."""
        return [self.put_file(path, key) for path, key in _tree_items(local_dir, prefix)]

    @abstractmethod
    def get_file(self, key: str, dest: Path) -> Path:
        """Fetch ``key`` into ``dest`` (a file path; parents are created) atomically and return ``dest``."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """The full location of ``key`` (``file:///...`` or ``s3://...``); does not check existence."""

    @abstractmethod
    def describe(self) -> str:
        """One human-readable line, without secrets."""

    @abstractmethod
    def check(self) -> str:
        """A cheap health check: a short ok text, or :class:`StorageError`."""


# -------------------------------------------------------------------------------------------- local


class LocalArtifactStore(ArtifactStore):
    """Artifacts as files below ``root``.

    Copies stream through an 8 MiB buffer, hash the bytes on the way, land in a temporary file in the
    destination directory and are moved into place with ``os.replace`` (atomic: readers see the old file or
    the new one, never a partial one). The written size is checked against the bytes read. The sha256 and
    any metadata go to a JSON sidecar under ``root/.vp-meta/`` so that ``get_file`` can verify the copy.
    """

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(root).expanduser().resolve()
        self.fsync = fsync

    # paths
    def _path(self, key: str) -> Path:
        return self.root.joinpath(*normalize_key(key).split("/"))

    def _meta_path(self, key: str) -> Path:
        return self.root.joinpath(_LOCAL_META_DIR, *f"{normalize_key(key)}.json".split("/"))

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def describe(self) -> str:
        return f"local directory {self.root}"

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def check(self) -> str:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".check-", delete=True) as fh:
                fh.write(b"ok")
                fh.flush()
        except OSError as exc:
            raise StorageError(
                f"local artifact directory {str(self.root)!r} is not writable ({exc.strerror or exc}): "
                "fix its permissions or set VISION_PIPELINE_HOME to a writable place"
            ) from exc
        return f"ok: {self.describe()} is writable"

    def _copy(self, src: Path, dest: Path, what: str, expected_sha256: str | None = None) -> tuple[int, str]:
        """Stream ``src`` to ``dest`` atomically; return (size, sha256 hex).

        With ``expected_sha256`` a copy whose hash differs is discarded before it replaces ``dest``.
        """
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create directory {str(dest.parent)!r} ({exc.strerror or exc}): fix its permissions") from exc
        digest = hashlib.sha256()
        size = 0
        buf = bytearray(_COPY_BUFFER)
        view = memoryview(buf)
        try:
            fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
        except OSError as exc:
            raise StorageError(f"cannot write into directory {str(dest.parent)!r} ({exc.strerror or exc}): fix its permissions") from exc
        tmp = Path(tmp_name)
        try:
            with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
                expected = os.fstat(fin.fileno()).st_size
                while True:
                    n = fin.readinto(buf)
                    if not n:
                        break
                    digest.update(view[:n])
                    fout.write(view[:n])
                    size += n
                fout.flush()
                if self.fsync:
                    os.fsync(fout.fileno())
                written = os.fstat(fout.fileno()).st_size
            if size != expected:
                raise StorageError(
                    f"{what}: {str(src)!r} changed size while it was copied ({expected} -> {size} bytes): "
                    "store it after the writer has finished"
                )
            if written != size:
                raise StorageError(
                    f"{what}: wrote {written} of {size} bytes to {str(dest)!r}: check free disk space and retry"
                )
            if expected_sha256 and digest.hexdigest() != expected_sha256:
                raise StorageError(
                    f"{what}: checksum mismatch: {str(src)!r} has sha256 {digest.hexdigest()}, recorded "
                    f"{expected_sha256}; the stored copy is corrupted or was modified: store it again"
                )
            os.replace(tmp, dest)
        except OSError as exc:
            raise StorageError(f"{what}: copying {str(src)!r} to {str(dest)!r} failed ({exc.strerror or exc}): check disk space and permissions") from exc
        finally:
            tmp.unlink(missing_ok=True)
        return size, digest.hexdigest()

    def put_file(self, local: Path, key: str, *, metadata: dict[str, str] | None = None) -> StoredObject:
        t0 = time.perf_counter()
        src = _require_file(local)
        key = normalize_key(key)
        meta = _check_metadata(metadata)
        dest = self._path(key)
        if dest.is_dir():
            raise StorageError(
                f"key {key!r} is already a folder of other artifacts in {self.describe()}: store this file under another key"
            )
        if dest.exists() and dest.resolve() == src.resolve():
            raise StorageError(f"{str(src)!r} already is the stored file for key {key!r}: write it elsewhere first")
        meta_path = self._meta_path(key)
        # Drop the old record first: if we crash before writing the new one, get_file skips the check instead
        # of reporting a false mismatch.
        meta_path.unlink(missing_ok=True)
        size, sha = self._copy(src, dest, f"storing key {key!r}")
        try:
            meta_path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=meta_path.parent, prefix=f".{meta_path.name}.", suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                json.dump({"sha256": sha, "size": size, "metadata": meta}, fh, sort_keys=True)
            os.replace(tmp_name, meta_path)
        except OSError as exc:
            raise StorageError(f"cannot write metadata {str(meta_path)!r} ({exc.strerror or exc}): check permissions") from exc
        return StoredObject(key=key, uri=dest.as_uri(), size=size, sha256=sha, seconds=time.perf_counter() - t0)

    def metadata(self, key: str) -> dict[str, str]:
        """The metadata recorded for ``key`` by ``put_file`` (``sha256`` included), or ``{}``."""
        try:
            record = json.loads(self._meta_path(key).read_text())
        except (OSError, ValueError):
            return {}
        return {**record.get("metadata", {}), "sha256": record.get("sha256", "")}

    def get_file(self, key: str, dest: Path) -> Path:
        key = normalize_key(key)
        src = self._path(key)
        if not src.is_file():
            raise StorageError(f"no artifact under key {key!r} in {self.describe()}: check the key (e.g. the job id)")
        dest = Path(dest)
        self._copy(src, dest, f"fetching key {key!r}", self.metadata(key).get("sha256") or None)
        return dest


# ----------------------------------------------------------------------------------------------- S3

_CONNECT_ERRORS = (
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ConnectionClosedError",
    "ReadTimeoutError",
    "ProxyConnectionError",
    "SSLError",
    "ConnectionError",
)
_CREDENTIAL_HINT = "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
_TREE_WORKERS = 4  # files uploaded at once by S3ArtifactStore.put_tree


def _walk_causes(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


class S3ArtifactStore(ArtifactStore):
    """Artifacts as objects in an S3 bucket (AWS, MinIO or any S3-compatible store via ``endpoint_url``).

    Uploads go through boto3's managed transfer (``TransferConfig``): files of at least
    ``multipart_threshold_mb`` are sent as a multipart upload in ``multipart_chunksize_mb`` parts,
    ``max_concurrency`` parts at a time.

    Integrity. Before the upload the file is read once to compute its sha256 and, when it will be sent as a
    multipart upload, the sha256 of every part with exactly the part size boto3 will use (the configured
    chunk size, adjusted the way s3transfer adjusts it so there are at most 10,000 parts). The whole-file
    sha256 is stored as the object metadata ``sha256``. The upload asks S3 for a SHA-256 checksum
    (``ChecksumAlgorithm="SHA256"``): botocore hashes every request body it sends and S3 rejects a body that
    does not match (``BadDigest``), so bytes damaged in transit never get stored. After the upload
    ``head_object(ChecksumMode="ENABLED")`` returns the checksum S3 keeps for the object and it is compared
    with the local hashes:

    * single-part object: ``ChecksumSHA256`` must equal base64(sha256(file));
    * multipart object: S3 returns the composite ``base64(sha256(d1 || d2 || ... || dN))-N`` over the raw
      part digests; it is recomputed from the local part digests and must match, part count included
      (servers that omit ``-N``, like moto's HEAD, are compared on the value; a server that keeps a
      full-object SHA-256 instead is compared with the whole-file hash).

    Because the local hashes are computed from the file independently of the bytes boto3 reads, this
    catches a file that changed between hashing and upload, a part that was sent twice or lost, and a store
    that kept different bytes from the ones checksummed in transit. The object size and the ``sha256``
    metadata are checked as well. A store that returns no SHA-256 checksum (some S3-compatible servers) is
    verified through its ETag instead: for unencrypted uploads it is the MD5 of the object (single part) or
    ``md5(md5(p1) || ... || md5(pN))-N`` (multipart), recomputed locally. Only when neither is available
    (e.g. an SSE-KMS ETag without checksums) is the check reduced to the size, with a logged warning.
    ``get_file`` re-hashes the downloaded file and compares it with the ``sha256`` metadata.
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        multipart_threshold_mb: int = 64,
        multipart_chunksize_mb: int = 16,
        max_concurrency: int = 8,
        addressing_style: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 120.0,
        max_attempts: int = 3,
    ) -> None:
        import boto3  # local import: keep `import vision_pipeline.storage` cheap
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        if not bucket or not bucket.strip():
            raise StorageError("S3 bucket name is empty: set VISION_PIPELINE_S3_BUCKET")
        if bool(access_key_id) != bool(secret_access_key):
            raise StorageError(
                "only one of the access key id and the secret access key is set: set both AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or neither to use the default AWS credential chain"
            )
        if multipart_chunksize_mb < 5:
            raise StorageError(f"multipart_chunksize_mb={multipart_chunksize_mb} is below the S3 minimum part size of 5 MB: use 5 or more")
        self.bucket = bucket.strip()
        self.prefix = normalize_key(prefix) if (prefix or "").strip("/ ") else ""
        self.endpoint_url = endpoint_url or None
        self.region = region or None
        self._secret = secret_access_key or None
        self.multipart_threshold = int(multipart_threshold_mb * MiB)
        self.multipart_chunksize = int(multipart_chunksize_mb * MiB)
        self.max_concurrency = max_concurrency
        self.transfer_config = TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.multipart_chunksize,
            max_concurrency=max_concurrency,
            use_threads=max_concurrency > 1,
            io_chunksize=1 * MiB,
        )
        style = addressing_style or ("path" if self.endpoint_url else "auto")
        config = Config(
            region_name=self.region,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            max_pool_connections=max(10, max_concurrency * _TREE_WORKERS + 2),
            s3={"addressing_style": style},
        )
        session = boto3.session.Session(
            aws_access_key_id=access_key_id or None,
            aws_secret_access_key=secret_access_key or None,
            aws_session_token=session_token or None,
            region_name=self.region,
        )
        try:
            self.client = session.client("s3", endpoint_url=self.endpoint_url, config=config)
        except Exception as exc:  # e.g. a malformed endpoint URL
            raise StorageError(
                f"cannot create an S3 client for endpoint {self.endpoint_url or '(AWS default)'}: "
                f"{type(exc).__name__}: {self._scrub(str(exc))}; check AWS_ENDPOINT_URL_S3/AWS_ENDPOINT_URL and AWS_REGION"
            ) from exc

    # --------------------------------------------------------------------------- naming
    def _object_key(self, key: str) -> str:
        key = normalize_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._object_key(key)}"

    @property
    def _endpoint_text(self) -> str:
        return self.endpoint_url or self.client.meta.endpoint_url

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix + '/' if self.prefix else ''}"
        region = self.client.meta.region_name or "default"
        return (
            f"S3 {where} at {self._endpoint_text} (region {region}; multipart from "
            f"{self.multipart_threshold // MiB} MB in {self.multipart_chunksize // MiB} MB parts, "
            f"{self.max_concurrency} at a time)"
        )

    # --------------------------------------------------------------------------- errors
    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _error(self, exc: BaseException, action: str, key: str | None = None) -> StorageError:
        """Translate a boto3/botocore exception into one StorageError message."""
        from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

        chain = _walk_causes(exc)
        where = f"at endpoint {self._endpoint_text}"
        target = f"s3://{self.bucket}/{self._object_key(key)}" if key is not None else f"bucket {self.bucket!r}"
        for err in chain:
            if isinstance(err, StorageError):
                return err
            if isinstance(err, (NoCredentialsError, PartialCredentialsError)):
                return StorageError(
                    f"{action} failed: no usable AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                    "(or configure an AWS profile / instance role)"
                )
            if type(err).__name__ in _CONNECT_ERRORS or (
                type(err).__module__.startswith("botocore") and "Connection" in type(err).__name__
            ):
                return StorageError(
                    f"{action} failed: cannot reach the S3 endpoint {self._endpoint_text} ({type(err).__name__}): "
                    "check AWS_ENDPOINT_URL_S3/AWS_ENDPOINT_URL and that the server is running and reachable"
                )
            if isinstance(err, ClientError):
                error = err.response.get("Error", {}) or {}
                code = str(error.get("Code", "") or "")
                status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                message = self._scrub(str(error.get("Message", "") or ""))
                bucket_level = key is None
                if code == "NoSuchBucket" or (code in ("404", "NotFound") and bucket_level):
                    return StorageError(
                        f"S3 bucket {self.bucket!r} does not exist {where}: create it or set VISION_PIPELINE_S3_BUCKET"
                    )
                if code in ("NoSuchKey", "404", "NotFound"):
                    return StorageError(f"{action} failed: no object {target} {where}: check the key (e.g. the job id)")
                if code in ("InvalidAccessKeyId", "InvalidClientTokenId", "InvalidToken", "ExpiredToken", "TokenRefreshRequired"):
                    return StorageError(f"S3 rejected the credentials ({code}) {where}: {_CREDENTIAL_HINT}")
                if code == "SignatureDoesNotMatch":
                    return StorageError(
                        f"S3 rejected the request signature (SignatureDoesNotMatch) {where}: the secret key does not "
                        f"match the access key id; {_CREDENTIAL_HINT}"
                    )
                if code in ("AccessDenied", "AllAccessDisabled", "403", "Forbidden"):
                    return StorageError(
                        f"{action} failed: S3 denied access to {target} ({code or status}) {where}: "
                        f"{_CREDENTIAL_HINT} and that the user may access bucket {self.bucket!r}"
                    )
                if code == "PermanentRedirect" or code == "AuthorizationHeaderMalformed" or code == "301":
                    return StorageError(
                        f"S3 bucket {self.bucket!r} is in another region ({code}) {where}: set AWS_REGION to the bucket's region"
                    )
                if code in ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "InvalidChecksum"):
                    return StorageError(
                        f"{action} failed: S3 found the uploaded bytes of {target} corrupted in transit ({code}): retry the upload"
                    )
                detail = f"{code or status}" + (f": {message}" if message else "")
                return StorageError(f"{action} failed for {target} {where} ({detail})")
        return StorageError(
            f"{action} failed for {target} {where}: {type(exc).__name__}: {self._scrub(str(exc))}"
        )

    # --------------------------------------------------------------------------- operations
    def check(self) -> str:
        try:
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
        except Exception as exc:
            raise self._error(exc, "checking the bucket") from exc
        return f"ok: {self.describe()} is reachable and listable"

    def _head(self, key: str, action: str, **kwargs: Any) -> dict[str, Any] | None:
        """``head_object`` for ``key``; None when there is no such object.

        HEAD responses carry no error body, so a 404 or 403 says neither "no such bucket" nor "bad credentials":
        on those the bucket is listed once (``check``) to get S3's precise error code.
        """
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._object_key(key), **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound", "403", "Forbidden", "AccessDenied"):
                self.check()
                if code in ("404", "NoSuchKey", "NotFound"):
                    return None
            raise self._error(exc, action, key) from exc
        except Exception as exc:
            raise self._error(exc, action, key) from exc

    def exists(self, key: str) -> bool:
        return self._head(key, "checking for an object") is not None

    def _part_size(self, size: int) -> int | None:
        """The part size s3transfer will use for ``size`` bytes, or None for a single PUT."""
        if size < self.multipart_threshold:
            return None
        from s3transfer.utils import ChunksizeAdjuster

        return ChunksizeAdjuster().adjust_chunksize(self.multipart_chunksize, size)

    def put_file(self, local: Path, key: str, *, metadata: dict[str, str] | None = None) -> StoredObject:
        t0 = time.perf_counter()
        src = _require_file(local)
        key = normalize_key(key)
        meta = _check_metadata(metadata)
        object_key = self._object_key(key)
        try:
            digest = _hash_file(src, self._part_size(src.stat().st_size))
        except OSError as exc:
            raise StorageError(f"cannot read local file {str(src)!r} ({exc.strerror or exc}): check the path and its permissions") from exc
        extra: dict[str, Any] = {"Metadata": {**meta, "sha256": digest.sha256}, "ChecksumAlgorithm": "SHA256"}
        try:
            self.client.upload_file(str(src), self.bucket, object_key, ExtraArgs=extra, Config=self.transfer_config)
        except Exception as exc:
            raise self._error(exc, f"uploading {str(src)!r}", key) from exc
        self._verify_upload(src, key, digest)
        return StoredObject(key=key, uri=self.uri(key), size=digest.size, sha256=digest.sha256, seconds=time.perf_counter() - t0)

    def _verify_upload(self, src: Path, key: str, digest: _Digest) -> None:
        head = self._head(key, "verifying the upload", ChecksumMode="ENABLED")
        if head is None:
            raise StorageError(f"upload of {str(src)!r} to {self.uri(key)} is not visible afterwards: check the bucket and retry")
        problems = _compare_head(head, digest)
        if problems is None:  # the store returned no SHA-256 checksum: use the ETag
            problems = _compare_etag(head, src, digest)
        if problems:
            raise StorageError(
                f"upload of {str(src)!r} to {self.uri(key)} failed verification ({'; '.join(problems)}): "
                "the file may have changed during the upload or the store kept different bytes; "
                "make sure nothing writes the file and store it again"
            )

    def put_tree(self, local_dir: Path, prefix: str) -> list[StoredObject]:
        """Like the base version, with up to ``_TREE_WORKERS`` files in flight (many small inference outputs)."""
        items = _tree_items(local_dir, prefix)
        if len(items) <= 1:
            return [self.put_file(path, key) for path, key in items]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(_TREE_WORKERS, len(items)), thread_name_prefix="s3-put-tree") as pool:
            return list(pool.map(lambda item: self.put_file(*item), items))

    def get_file(self, key: str, dest: Path) -> Path:
        key = normalize_key(key)
        dest = Path(dest)
        object_key = self._object_key(key)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
            os.close(fd)
        except OSError as exc:
            raise StorageError(f"cannot write into directory {str(dest.parent)!r} ({exc.strerror or exc}): fix its permissions") from exc
        tmp = Path(tmp_name)
        try:
            head = self._head(key, f"fetching key {key!r}")
            if head is None:
                raise StorageError(
                    f"no artifact under key {key!r} ({self.uri(key)}) at endpoint {self._endpoint_text}: "
                    "check the key (e.g. the job id)"
                )
            try:
                self.client.download_file(self.bucket, object_key, str(tmp), Config=self.transfer_config)
            except Exception as exc:
                raise self._error(exc, f"downloading key {key!r}", key) from exc
            got = _hash_file(tmp)
            expected_sha = (head.get("Metadata") or {}).get("sha256")
            if got.size != head.get("ContentLength", got.size):
                raise StorageError(
                    f"download of {self.uri(key)} is incomplete ({got.size} of {head['ContentLength']} bytes): retry"
                )
            if expected_sha and got.sha256 != expected_sha:
                raise StorageError(
                    f"checksum mismatch for {self.uri(key)}: downloaded sha256 {got.sha256}, recorded {expected_sha}; "
                    "the object was modified outside the pipeline or corrupted: store it again"
                )
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _compare_head(head: Mapping[str, Any], digest: _Digest) -> list[str] | None:
    """Problems found comparing ``head_object`` with the local hashes; None when S3 sent no SHA-256 checksum."""
    problems: list[str] = []
    length = head.get("ContentLength")
    if length != digest.size:
        problems.append(f"size {length} != local {digest.size} bytes")
    recorded = (head.get("Metadata") or {}).get("sha256")
    if recorded != digest.sha256:
        problems.append(f"metadata sha256 {recorded} != local {digest.sha256}")
    remote = head.get("ChecksumSHA256")
    if not remote:
        return problems or None
    value, _, count = remote.partition("-")
    whole = _b64(bytes.fromhex(digest.sha256))
    if digest.part_digests:
        # Multipart: S3 keeps the composite over the part digests. AWS reports it as "<b64>-N"; some servers
        # (moto's HEAD, GetObjectAttributes) leave out "-N". A server that keeps a full-object SHA-256 instead
        # is accepted too: either value pins down every byte.
        composite = _b64(hashlib.sha256(b"".join(digest.part_digests)).digest())
        n = len(digest.part_digests)
        if count and count != str(n):
            problems.append(f"S3 reports {count} parts, the file was sent as {n} parts of {digest.part_size} bytes")
        elif value not in (composite, whole):
            problems.append(
                f"S3 composite SHA-256 {remote} != local {composite}-{n} ({n} parts of {digest.part_size} bytes)"
            )
    elif count:
        problems.append(f"S3 reports a multipart checksum ({remote}) for a file that was sent in one request")
    elif value != whole:
        problems.append(f"S3 SHA-256 {remote} != local {whole}")
    return problems


def _compare_etag(head: Mapping[str, Any], src: Path, digest: _Digest) -> list[str]:
    """Fallback for stores without SHA-256 checksums: recompute the (multipart) MD5 ETag."""
    problems: list[str] = []
    if head.get("ContentLength") != digest.size:
        problems.append(f"size {head.get('ContentLength')} != local {digest.size} bytes")
    etag = str(head.get("ETag", "")).strip('"')
    value, _, count = etag.partition("-")
    if len(value) != 32 or not all(c in "0123456789abcdef" for c in value.lower()):
        log.warning("S3 store returned neither a SHA-256 checksum nor an MD5 ETag; verified %s by size only", src)
        return problems
    part_size = digest.part_size if count else None
    md5s: list[bytes] = []
    whole = hashlib.md5(usedforsecurity=False)
    part = hashlib.md5(usedforsecurity=False)
    in_part = 0
    with open(src, "rb") as fh:
        while block := fh.read(_COPY_BUFFER):
            whole.update(block)
            if part_size:
                offset = 0
                while offset < len(block):
                    take = min(part_size - in_part, len(block) - offset)
                    part.update(block[offset : offset + take])
                    in_part += take
                    offset += take
                    if in_part == part_size:
                        md5s.append(part.digest())
                        part = hashlib.md5(usedforsecurity=False)
                        in_part = 0
    if part_size and in_part:
        md5s.append(part.digest())
    if count:
        expected = f"{hashlib.md5(b''.join(md5s), usedforsecurity=False).hexdigest()}-{len(md5s)}"
    else:
        expected = whole.hexdigest()
    if etag.lower() != expected:
        if count and not part_size:
            log.warning("multipart ETag %s for a single-part upload of %s; verified by size only", etag, src)
        else:
            problems.append(f"ETag {etag} != local {expected}")
    return problems


# ------------------------------------------------------------------------------------------ factory


def _clean(value: str | None) -> str | None:
    value = value.strip() if isinstance(value, str) else value
    return value or None


def make_store(
    bucket: str | None,
    prefix: str = "",
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    *,
    local_root: Path | None = None,
    **s3_options: Any,
) -> ArtifactStore:
    """An S3 store when ``bucket`` is non-empty, else a local store at ``local_root`` or ``settings.artifacts_dir()``.

    Empty strings count as unset (what an unset ``dg.EnvVar`` may resolve to). ``s3_options`` go to
    :class:`S3ArtifactStore` (``multipart_threshold_mb``, ``multipart_chunksize_mb``, ``max_concurrency``, ...).
    """
    bucket = _clean(bucket)
    if not bucket:
        return LocalArtifactStore(Path(local_root) if local_root is not None else settings.artifacts_dir())
    return S3ArtifactStore(
        bucket,
        prefix=_clean(prefix) or "",
        endpoint_url=_clean(endpoint_url),
        region=_clean(region),
        access_key_id=_clean(access_key_id),
        secret_access_key=_clean(secret_access_key),
        **s3_options,
    )


def store_from_env() -> ArtifactStore:
    """The store the environment asks for, read now (never at import time).

    S3 when ``VISION_PIPELINE_S3_BUCKET`` is set, with ``VISION_PIPELINE_S3_PREFIX``,
    ``AWS_ENDPOINT_URL_S3`` (or ``AWS_ENDPOINT_URL``), ``AWS_REGION`` (or ``AWS_DEFAULT_REGION``),
    ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (plus ``AWS_SESSION_TOKEN``); otherwise the local
    directory ``settings.artifacts_dir()``.
    """
    env = os.environ
    bucket = _clean(env.get("VISION_PIPELINE_S3_BUCKET"))
    if not bucket:
        return make_store(None)
    return make_store(
        bucket,
        env.get("VISION_PIPELINE_S3_PREFIX", ""),
        _clean(env.get("AWS_ENDPOINT_URL_S3")) or _clean(env.get("AWS_ENDPOINT_URL")),
        _clean(env.get("AWS_REGION")) or _clean(env.get("AWS_DEFAULT_REGION")),
        _clean(env.get("AWS_ACCESS_KEY_ID")),
        _clean(env.get("AWS_SECRET_ACCESS_KEY")),
        session_token=_clean(env.get("AWS_SESSION_TOKEN")),
    )
