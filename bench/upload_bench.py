"""Benchmark 4: artifact upload throughput of a 256 MiB file through the project's artifact store."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from bench.common import MB, MiB, PYTHON, REPO_ROOT, Comparison, clean_env, interleave, median

MOTO_REGION = "us-east-1"
MOTO_KEY = "testing"  # moto accepts any credentials


def make_file(path: Path, size: int) -> Path:
    """``size`` random (incompressible) bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    chunk = 8 * MiB
    with open(path, "wb") as fh:
        left = size
        while left > 0:
            n = min(chunk, left)
            fh.write(os.urandom(n))
            left -= n
    return path


@contextmanager
def moto_server(log: Path) -> Iterator[str]:
    """A moto S3 server in a child process; yields its endpoint URL."""
    sink = open(log, "wb")
    proc = subprocess.Popen([PYTHON, "-m", "bench.moto_server"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=sink, cwd=str(REPO_ROOT), env=clean_env(), start_new_session=True)
    try:
        line = proc.stdout.readline().decode().strip()
        if not line.startswith("PORT "):
            raise RuntimeError(f"moto server did not start (got {line!r}); see {log}")
        yield f"http://127.0.0.1:{line.split()[1]}"
    finally:
        try:
            proc.stdin.close()
            proc.wait(timeout=15)
        except Exception:  # noqa: BLE001 - shut it down whatever happened
            proc.kill()
            proc.wait()
        sink.close()


def run(work: Path, *, size: int, reps: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Local store and S3 store (moto on loopback), ``reps`` uploads each; plus raw boto3 for context."""
    import boto3
    from boto3.s3.transfer import TransferConfig

    from vision_pipeline.storage import LocalArtifactStore, S3ArtifactStore

    src = make_file(work / "payload.bin", size)
    out: dict[str, Any] = {"size_bytes": size}

    local = LocalArtifactStore(work / "local-store")
    local_s: list[float] = []
    for i in range(reps):
        obj = local.put_file(src, "bench/payload.bin")
        local_s.append(obj.seconds)
        log(f"    local put_file {i + 1}/{reps}: {size / obj.seconds / MB:.1f} MB/s")
    out["local_s"] = local_s
    out["local_mb_s"] = size / median(local_s) / MB
    # What the disk itself does: the same copy without hashing (plain read + write + fsync).
    raw_s = []
    for _ in range(max(1, reps - 1)):
        t0 = time.perf_counter()
        with open(src, "rb") as fin, open(work / "raw-copy.bin", "wb") as fout:
            while block := fin.read(8 * MiB):
                fout.write(block)
            fout.flush()
            os.fsync(fout.fileno())
        raw_s.append(time.perf_counter() - t0)
        (work / "raw-copy.bin").unlink()
    out["local_raw_copy_mb_s"] = size / median(raw_s) / MB

    with moto_server(work / "moto.log") as endpoint:
        client = boto3.client("s3", endpoint_url=endpoint, region_name=MOTO_REGION,
                              aws_access_key_id=MOTO_KEY, aws_secret_access_key=MOTO_KEY)
        client.create_bucket(Bucket="bench")
        store = S3ArtifactStore("bench", endpoint_url=endpoint, region=MOTO_REGION,
                                access_key_id=MOTO_KEY, secret_access_key=MOTO_KEY)
        store.check()
        # The same transfer settings without the store's hashing, checksums and verification.
        transfer = TransferConfig(multipart_threshold=store.multipart_threshold,
                                  multipart_chunksize=store.multipart_chunksize,
                                  max_concurrency=store.transfer_config.max_concurrency)

        def via_store(i: int) -> float:
            return store.put_file(src, "bench/payload.bin").seconds

        def raw_boto3(i: int) -> float:
            t0 = time.perf_counter()
            client.upload_file(str(src), "bench", "bench/raw.bin", Config=transfer)
            return time.perf_counter() - t0

        def single_put(i: int) -> float:
            t0 = time.perf_counter()
            with open(src, "rb") as fh:
                client.put_object(Bucket="bench", Key="bench/single.bin", Body=fh)
            return time.perf_counter() - t0

        comp: Comparison = interleave(via_store, raw_boto3, reps, log, ("store.put_file", "raw boto3 upload_file"))
        out["s3_s"] = comp.a
        out["s3_raw_s"] = comp.b
        out["s3_mb_s"] = size / median(comp.a) / MB
        out["s3_raw_mb_s"] = size / median(comp.b) / MB
        out["s3_store_vs_raw_time"] = comp.ratio
        single = [single_put(0)]
        out["s3_single_put_mb_s"] = size / median(single) / MB
        out["s3_multipart"] = size >= store.multipart_threshold
    return out
