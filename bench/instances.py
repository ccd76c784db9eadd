"""Simulated Function instances for the benchmarks: child processes that deliver events like Event Grid.

Each instance is a spawned process with its own poolsync runtime and a thread pool of `concurrency`
invocations (a Functions host's concurrency limit). Events go to it through a queue and are handed to a
handler exactly as the host would: for poolsync, the Event Grid function itself; each poolsync instance
also polls the flush request queue and runs the `flush_requests` queue trigger, as the local Functions
host (devstack/host.py) does. A delivery fails when the
handler raises or does not return within Event Grid's 30 s window; a failed delivery is redelivered after
the next delay of the redelivery schedule (Event Grid's is 10 s, 30 s, 1 min, 5 min, ...). Every attempt's
held time (handed over -> handler returned) is reported.

`InstancePool` runs several instances; `drain()` ends one measured phase and collects the reports, so the
same processes (and their warm runtimes) serve several cases.
"""

from __future__ import annotations

import heapq
import itertools
import json
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from emulator.events import DELETE_SUCCESS, WRITE_SUCCESS, build_event
from shared import settings

POOLSYNC = "poolsync"
NAIVE = "naive"
EVENT_GRID_WINDOW = 30.0  # seconds Event Grid waits for the endpoint to answer
EVENT_GRID_REDELIVERY = (10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0)  # documented schedule
FAST_REDELIVERY = (0.5, 1.0, 2.0, 4.0, 8.0, 10.0)  # a quick stand-in, for the short bursts
SWEEP_OFF = 0.0
_DRAIN = "drain"
API_VERSION = "2024-03-01"


def write_event(resource_id: str) -> dict[str, Any]:
    """ResourceWriteSuccess for a created/updated resource, in the Event Grid schema as delivered."""
    return build_event(WRITE_SUCCESS, resource_id, "PUT", API_VERSION)


def delete_event(resource_id: str) -> dict[str, Any]:
    return build_event(DELETE_SUCCESS, resource_id, "DELETE", API_VERSION)


@dataclass
class InstanceReport:
    delivered: int = 0  # attempts that returned within the window
    redeliveries: int = 0
    failed: int = 0  # attempts that raised or ran past the window
    failed_by_throttling: int = 0  # of the failed: the error mentions a 429 / throttling
    late: int = 0  # of the failed: returned, but after the window
    gave_up: int = 0  # events whose next redelivery fell after the deadline
    sweeps: int = 0
    held: list[float] = field(default_factory=list)  # seconds per attempt
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__ | {"errors": self.errors[:5]}


def poolsync_handler(env: dict[str, str]) -> tuple[Callable[[dict[str, Any]], None], Callable[[], None]]:
    """(Event Grid function, sweep timer function) of the app, built from `env` as a host would."""
    from azure.functions import meta
    from azure.functions.eventgrid import EventGridEventInConverter
    from azure.functions.timer import TimerRequest

    from handlers.events import eventgrid_resource_events, intents_sweep_timer
    from shared.app.flusher import event_service
    from shared.app.runtime import Runtime, set_runtime

    runtime = Runtime.from_env(env)
    set_runtime(runtime)
    event_service(runtime)
    trigger = eventgrid_resource_events.build().get_user_function()
    timer = intents_sweep_timer.build().get_user_function()

    def handle(event: dict[str, Any]) -> None:
        trigger(EventGridEventInConverter.decode(meta.Datum(json.dumps(event), "json"), trigger_metadata={}))

    return handle, lambda: timer(TimerRequest(past_due=False))


def flush_poller(env: dict[str, str]) -> Any:
    """The queue poller of the app's `flush_requests` function, as the local Functions host runs it."""
    from devstack.host import FunctionIndex, QueuePoller, load_app, queue_connection

    function = FunctionIndex.of(load_app()).get("flush_requests")
    connection = queue_connection(function.binding, env) if function is not None else None
    if function is None or connection is None:
        raise RuntimeError("the app has no flush_requests queue trigger with a storage connection")
    return QueuePoller(function, connection)


def _is_throttling(error: BaseException) -> bool:
    text = f"{type(error).__name__} {error}"
    return "429" in text or "Throttl" in text or "TooManyRequests" in text


class _Deliverer:
    """The host side of one instance: attempts, the 30 s window, redeliveries on a schedule."""

    def __init__(self, handle: Callable[[dict[str, Any]], None], concurrency: int,
                 schedule: Sequence[float]) -> None:
        self.handle = handle
        self.schedule = tuple(schedule)
        self.executor = ThreadPoolExecutor(max_workers=concurrency)
        self.lock = threading.Condition()
        self.report = InstanceReport()
        self.outstanding = 0  # attempts running or queued, plus redeliveries scheduled
        self.give_up_at = float("inf")
        self._due: list[tuple[float, int, dict[str, Any], int]] = []  # (when, seq, event, attempt)
        self._seq = itertools.count()
        self._closed = False
        threading.Thread(target=self._redeliver_when_due, name="redelivery", daemon=True).start()

    def submit(self, event: dict[str, Any], attempt: int = 0, *, counted: bool = False) -> None:
        if not counted:  # a redelivery is counted as outstanding from when it was scheduled
            with self.lock:
                self.outstanding += 1
        handed_over = time.monotonic()
        self.executor.submit(self._attempt, event, attempt, handed_over)

    def _attempt(self, event: dict[str, Any], attempt: int, handed_over: float) -> None:
        error: BaseException | None = None
        try:
            self.handle(event)
        except Exception as raised:  # Event Grid retries any failed delivery
            error = raised
        held = time.monotonic() - handed_over
        with self.lock:
            self.report.held.append(held)
            if error is None and held <= EVENT_GRID_WINDOW:
                self.report.delivered += 1
            else:
                self.report.failed += 1
                if error is None:
                    self.report.late += 1
                    self.report.errors.append(f"no answer within {EVENT_GRID_WINDOW:g} s ({held:.1f} s)")
                else:
                    self.report.failed_by_throttling += _is_throttling(error)
                    self.report.errors.append(f"{type(error).__name__}: {error}".splitlines()[0][:200])
                # Event Grid would have redelivered at window's end already; a late answer counts from there.
                failed_at = handed_over + min(held, EVENT_GRID_WINDOW)
                delay = self.schedule[min(attempt, len(self.schedule) - 1)]
                if failed_at + delay > self.give_up_at:
                    self.report.gave_up += 1
                else:
                    self.outstanding += 1
                    heapq.heappush(self._due, (failed_at + delay, next(self._seq), event, attempt + 1))
            self.outstanding -= 1
            self.lock.notify_all()

    def _redeliver_when_due(self) -> None:
        while True:
            with self.lock:
                while not self._closed and (not self._due or self._due[0][0] > time.monotonic()):
                    self.lock.wait(0.2 if not self._due else max(0.0, self._due[0][0] - time.monotonic()))
                if self._closed:
                    return
                _, _, event, attempt = heapq.heappop(self._due)
                self.report.redeliveries += 1
            self.submit(event, attempt, counted=True)

    def drain(self, deadline_after: float) -> dict[str, Any]:
        """No more events this phase: finish what runs, redeliver what is due before the deadline."""
        with self.lock:
            self.give_up_at = time.monotonic() + deadline_after
            for when, _, _, _ in self._due:
                if when > self.give_up_at:
                    self.report.gave_up += 1
                    self.outstanding -= 1
            self._due = [entry for entry in self._due if entry[0] <= self.give_up_at]
            heapq.heapify(self._due)
            while self.outstanding > 0:
                self.lock.wait(0.5)
            report, self.report = self.report, InstanceReport()
            self.give_up_at = float("inf")
        return report.as_dict()

    def close(self) -> None:
        with self.lock:
            self._closed = True
            self.lock.notify_all()
        self.executor.shutdown(wait=True)


def _sweep_on_schedule(sweep: Callable[[], None], period: float, deliverer: _Deliverer) -> None:
    """Run the sweep timer at wall-clock multiples of `period`, as an NCRONTAB `0 */5 * * * *` fires."""
    while True:
        time.sleep(period - time.time() % period)
        try:
            sweep()
            with deliverer.lock:
                deliverer.report.sweeps += 1
        except Exception as error:
            with deliverer.lock:
                deliverer.report.errors.append(f"sweep: {type(error).__name__}: {error}"[:200])


def instance_main(mode: str, env: dict[str, str], inbox: Any, concurrency: int, schedule: Sequence[float],
                  sweep_period: float, ready: Any, results: Any,
                  naive_factory: Callable[[dict[str, str], list[float]], Callable[[dict[str, Any]], None]]
                  | None = None) -> None:
    """Build the handler, say ready, then deliver what arrives in `inbox`: an event dict, (drain, seconds)
    to end a phase and put its report in `results`, or None to exit."""
    log_level = settings.BENCH_LOG.text(settings.app_settings())
    if log_level:
        import logging

        logging.basicConfig(level=log_level,
                            format="%(created).3f %(process)d %(name)s %(message)s")
        logging.getLogger("azure").setLevel(logging.WARNING)
    give_up_at = [float("inf")]  # wall clock; the naive handler stops retrying there
    sweep = None
    poller = None
    if mode == POOLSYNC:
        handle, sweep = poolsync_handler(env)
        poller = flush_poller(env).start()
    else:
        assert naive_factory is not None
        handle = naive_factory(env, give_up_at)
    deliverer = _Deliverer(handle, concurrency, schedule)
    if sweep is not None and sweep_period > SWEEP_OFF:
        threading.Thread(target=_sweep_on_schedule, args=(sweep, sweep_period, deliverer),
                         name="sweep-timer", daemon=True).start()
    ready.put(os.getpid())
    while (message := inbox.get()) is not None:
        if isinstance(message, tuple) and message[0] == _DRAIN:
            _, deadline_after, phase = message
            give_up_at[0] = time.time() + deadline_after
            results.put(deliverer.drain(deadline_after) | {"phase": phase})
            give_up_at[0] = float("inf")
        else:
            deliverer.submit(message)
    deliverer.close()
    if poller is not None:
        poller.stop()


class InstancePool:
    """`count` simulated Function instances; events go round-robin unless an instance is named."""

    def __init__(self, mode: str, env: dict[str, str], count: int, concurrency: int, *,
                 schedule: Sequence[float] = EVENT_GRID_REDELIVERY, sweep_period: float = SWEEP_OFF,
                 naive_factory: Any = None) -> None:
        context = multiprocessing.get_context("spawn")
        self._ready, self._results = context.Queue(), context.Queue()
        self._inboxes = [context.Queue() for _ in range(count)]
        # only the first instance runs the timer: a timer trigger fires on one instance of the app
        self._workers = [
            context.Process(target=instance_main, daemon=True,
                            args=(mode, env, inbox, concurrency, tuple(schedule),
                                  sweep_period if index == 0 else SWEEP_OFF, self._ready, self._results,
                                  naive_factory))
            for index, inbox in enumerate(self._inboxes)
        ]
        self._next = 0
        self._phase = 0

    def start(self, timeout: float = 180.0) -> InstancePool:
        for worker in self._workers:
            worker.start()
        for _ in self._workers:
            self._ready.get(timeout=timeout)  # imports and runtime construction on a loaded machine
        return self

    def deliver(self, event: dict[str, Any], instance: int | None = None) -> None:
        if instance is None:
            instance, self._next = self._next, (self._next + 1) % len(self._inboxes)
        self._inboxes[instance].put(event)

    def drain(self, deadline_after: float, wait: float = 60.0) -> list[dict[str, Any]]:
        """End the phase: each instance finishes its deliveries (redeliveries until `deadline_after` s
        from now) and reports; an instance that does not report within deadline + `wait` is noted."""
        self._phase += 1
        for inbox in self._inboxes:
            inbox.put((_DRAIN, deadline_after, self._phase))
        reports: list[dict[str, Any]] = []
        give_up = time.monotonic() + deadline_after + wait
        while len(reports) < len(self._inboxes):
            try:
                report = self._results.get(timeout=max(1.0, give_up - time.monotonic()))
            except queue.Empty:
                missing = len(self._inboxes) - len(reports)
                return reports + [{"errors": ["instance did not finish"], "failed": 0, "held": []}] * missing
            if report.get("phase") == self._phase:  # a late report of an earlier phase is not this one's
                reports.append(report)
        return reports

    def stop(self) -> None:
        for inbox in self._inboxes:
            inbox.put(None)
        for worker in self._workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()

    def __enter__(self) -> InstancePool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
