"""``python -m bench.moto_server``: moto's S3 server on 127.0.0.1 in its own process.

Prints ``PORT <n>`` once listening and runs until its stdin is closed. A separate process keeps the
server's request handling from competing with boto3 for the bench process's GIL.
"""

from __future__ import annotations

import sys


def main() -> int:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _host, port = server.get_host_and_port()
    print(f"PORT {port}", flush=True)
    try:
        sys.stdin.read()  # returns when the parent closes the pipe (or dies)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
