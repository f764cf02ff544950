"""``python -m destinations.mock --port 8765 --state-dir DIR [--meta-token T]
[--mailchimp-token T] [--google-token T] [--ready-file F]``.

Serves both mock platforms on 127.0.0.1 until SIGTERM or SIGINT. Tokens default to the
environment (``MOCK_META_TOKEN``, ``MOCK_MAILCHIMP_TOKEN``, ``MOCK_GOOGLE_TOKEN``), else
``mock-meta-token``, ``mock-mailchimp-token`` and ``mock-google-token``. When listening it
prints ``mock destinations listening on http://127.0.0.1:PORT`` and writes PORT to the ready
file (atomically), so a parent process started with ``--port 0`` learns the port.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path

from destinations.mock.server import (
    DEFAULT_GOOGLE_TOKEN,
    DEFAULT_MAILCHIMP_TOKEN,
    DEFAULT_META_TOKEN,
    HOST,
    make_server,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m destinations.mock", description=__doc__)
    parser.add_argument("--port", type=int, default=8765, help="TCP port, 0 picks a free one")
    parser.add_argument("--state-dir", type=Path, required=True, help="where the SQLite file lives")
    parser.add_argument("--meta-token", default=None, help="env MOCK_META_TOKEN")
    parser.add_argument("--mailchimp-token", default=None, help="env MOCK_MAILCHIMP_TOKEN")
    parser.add_argument("--google-token", default=None, help="env MOCK_GOOGLE_TOKEN")
    parser.add_argument("--ready-file", type=Path, default=None, help="gets the port when ready")
    return parser.parse_args(argv)


def write_ready_file(path: Path, port: int) -> None:
    """Write the port to ``path`` via a temporary file and rename (readers never see half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{port}\n")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGTERM/SIGINT; returns the exit code (0)."""
    args = parse_args(argv)
    meta_token = args.meta_token or os.environ.get("MOCK_META_TOKEN") or DEFAULT_META_TOKEN
    mailchimp_token = (
        args.mailchimp_token or os.environ.get("MOCK_MAILCHIMP_TOKEN") or DEFAULT_MAILCHIMP_TOKEN
    )
    google_token = args.google_token or os.environ.get("MOCK_GOOGLE_TOKEN") or DEFAULT_GOOGLE_TOKEN
    server = make_server(
        args.state_dir,
        port=args.port,
        meta_token=meta_token,
        mailchimp_token=mailchimp_token,
        google_token=google_token,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2})
    thread.start()
    print(f"mock destinations listening on http://{HOST}:{server.port}", flush=True)
    if args.ready_file:
        write_ready_file(args.ready_file, server.port)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
        server.store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
