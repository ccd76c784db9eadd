"""`python -m emulator --port PORT --state-dir DIR [--topology FILE] [--event-webhook URL] ...`"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from emulator.app import Emulator
from emulator.retry_after import LroRetryAfter


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m emulator", description="Local Azure Resource Manager emulator"
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--state-dir", required=True, help="where ca.pem is written")
    parser.add_argument("--topology", help="JSON or YAML topology to seed the world with")
    parser.add_argument(
        "--event-webhook", help="URL receiving Event Grid events for VM/NIC writes and deletes"
    )
    parser.add_argument(
        "--profile",
        choices=["default", "azure"],
        default="default",
        help="default: lenient; azure: Azure's documented throttling, conflicts and resource rules",
    )
    parser.add_argument(
        "--operation-seconds",
        type=float,
        default=None,
        help="duration of each long-running write (profile default: 0.05, azure 5)",
    )
    parser.add_argument(
        "--lro-retry-after",
        type=_retry_after,
        default=None,
        help="Retry-After on accepted writes and running polls: seconds for every provider (0 = omitted), "
        'or JSON per provider, e.g. \'{"Microsoft.Compute": {"accepted_write": 10}}\' (fields in '
        "docs/emulator.md; profile default: default omits it, azure sends each provider's values)",
    )
    parser.add_argument("--page-size", type=int, default=100)
    return parser.parse_args(argv)


def _retry_after(text: str) -> LroRetryAfter:
    try:
        return LroRetryAfter.parse(json.loads(text))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    emulator = Emulator(
        state_dir=args.state_dir,
        port=args.port,
        topology=args.topology,
        operation_seconds=args.operation_seconds,
        lro_retry_after=args.lro_retry_after,
        page_size=args.page_size,
        event_webhook=args.event_webhook,
        profile=args.profile,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    emulator.start()
    sys.stdout.write(f"listening on {emulator.url}\n")  # one write: no log line can land inside it
    sys.stdout.flush()
    stop.wait()
    emulator.stop()
    sys.stdout.flush()
    return 0
