"""`selfplay view RUN_DIR`: serve a run's pages on this machine (read-only; safe beside a live run).

    selfplay view runs/demo                      # http://127.0.0.1:8765/
    selfplay view runs/demo --port 9000
    selfplay view runs/demo --host 0.0.0.0       # other machines too: anyone who reaches it reads the run

Refresh a page to see what the run wrote since; nothing is written into RUN_DIR.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from selfplay.errors import UserError

DEFAULT_PORT = 8765
LOCAL_NAMES = ["127.0.0.1", "localhost"]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="selfplay view", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", help="a run directory (or its episodes/ store)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port to listen on (default {DEFAULT_PORT}; 0: any free port)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    return parser.parse_args(list(argv))


def resolve_run_dir(run_dir: str) -> Path:
    """The run directory ``run_dir`` names (a run directory or its episodes/ folder)."""
    path = Path(run_dir)
    if not path.exists():
        raise UserError(f"{run_dir}: no such run directory")
    if not path.is_dir():
        raise UserError(f"{run_dir}: not a directory (expected a run directory)")
    if path.name == "episodes" and not (path / "episodes").exists():
        path = path.parent
    markers = ("episodes", "config.yaml", "checkpoints", "elo.json", "summary.json")
    if not any((path / m).exists() for m in markers):
        raise UserError(f"{run_dir}: not a run directory (none of {', '.join(markers)} here)")
    return path.resolve()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({err.strerror}); try --port N") from None
    sock.listen(128)
    return sock


def view_main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: expected 0 .. 65535")
    run_dir = resolve_run_dir(args.run_dir)
    import uvicorn

    from selfplay.view.app import make_app

    sock = _bind(args.host, args.port)  # bound here, so --port 0 can print the port it got
    port = sock.getsockname()[1]
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"selfplay view: {run_dir}\n  http://{shown}:{port}/   (Ctrl-C to stop)", flush=True)
    if not _is_loopback(args.host):
        print(f"  listening on {args.host}: anyone who can reach this address can read the run",
              file=sys.stderr, flush=True)
    # Bound to this machine: only requests addressed to it by name are served, so a web page
    # elsewhere cannot read the run through a DNS name rebound to 127.0.0.1.
    hosts = LOCAL_NAMES if args.host in LOCAL_NAMES else None
    config = uvicorn.Config(make_app(run_dir, allowed_hosts=hosts), log_level="warning",
                            access_log=False)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0
