"""`make run` = `python -m devstack`: start the local stack, print where everything listens, serve until
Ctrl-C. `--check` starts it, sends one request of each kind, stops it, and exits 0 only if all passed."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from devstack.selfcheck import run_checks
from devstack.stack import SAMPLE_RULES, SAMPLE_TOPOLOGY, STATE_DIR, LocalStack


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("--check", action="store_true",
                        help="start, self-test, stop; the exit code says whether it works")
    parser.add_argument("--port", type=int, default=7071, help="Functions host port (0: any free port)")
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR)
    parser.add_argument("--topology", type=Path, default=SAMPLE_TOPOLOGY)
    parser.add_argument("--rules", type=Path, default=SAMPLE_RULES)
    parser.add_argument("--app", default="function_app:app", help="module:attribute of the FunctionApp")
    parser.add_argument("--operation-seconds", type=float, default=0.2, help="emulated LRO duration")
    parser.add_argument("--verbose", action="store_true", help="log every request the host serves")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if not args.verbose:
        logging.getLogger("devstack.host").setLevel(logging.WARNING)
        logging.getLogger("azure").setLevel(logging.WARNING)
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    stack = LocalStack(state_dir=args.state_dir, topology=args.topology, rules=args.rules, app_spec=args.app,
                       host_port=args.port, operation_seconds=args.operation_seconds)
    try:
        stack.start()
    except OSError as error:
        print(f"cannot start the local stack: {error} (port {args.port} taken? try --port 0)",
              file=sys.stderr)
        return 1
    try:
        print(stack.banner(), flush=True)
        if args.check:
            results = run_checks(stack)
            for result in results:
                print(f"  [{'ok' if result.passed else 'FAIL'}] {result.name}: {result.detail}", flush=True)
            passed = all(result.passed for result in results)
            print("self-check passed" if passed else "self-check FAILED", flush=True)
            return 0 if passed else 1
        stopping.wait()
        print("stopping...", flush=True)
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
