"""The local stack: Azurite, the ARM emulator (a child process) and the local Functions host (in this
process), wired so the emulator's VM/NIC events reach the app and the app's SDK calls reach the emulator.

Start order matters: the host binds its port first (the emulator needs the webhook URL at start),
then the emulator starts, then the app settings point at both and the host begins serving.
"""

from __future__ import annotations

import json
import re
import secrets
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.azurite import Azurite
from devstack.host import EVENT_GRID_TRIGGER, HTTP_TRIGGER, TIMER_TRIGGER, LocalFunctionsHost, load_app
from devstack.process import die_with_parent, stop_process, wait_for_line
from devstack.settings import local_settings
from shared import settings as declared
from shared.app.runtime import set_runtime
from shared.settings import export_to_process, restore_process

REPO_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = REPO_ROOT / ".devstack"
SAMPLE_TOPOLOGY = Path(__file__).with_name("sample-topology.yaml")
SAMPLE_RULES = REPO_ROOT / "examples" / "rules.sample.json"
EVENT_FUNCTION = "eventgrid_resource_events"  # preferred when the app has several Event Grid functions
LISTENING = re.compile(r"listening on (https?://\S+)")


@dataclass
class EmulatorProcess:
    """`python -m emulator` as a child process; its log goes to `<state_dir>/emulator.log`."""

    state_dir: Path
    topology: Path | None
    event_webhook: str | None
    operation_seconds: float = 0.2
    page_size: int | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    url: str = ""

    @property
    def ca_path(self) -> str:
        return str(self.state_dir / "ca.pem")

    @property
    def log_path(self) -> Path:
        return self.state_dir / "emulator.log"

    def start(self, timeout: float = 60.0) -> EmulatorProcess:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "emulator", "--port", "0", "--state-dir", str(self.state_dir),
                   "--operation-seconds", str(self.operation_seconds)]
        if self.topology is not None:
            command += ["--topology", str(self.topology)]
        if self.event_webhook:
            command += ["--event-webhook", self.event_webhook]
        if self.page_size:
            command += ["--page-size", str(self.page_size)]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            preexec_fn=die_with_parent)
        self.url = wait_for_line(self.log_path, self.process, LISTENING, timeout)[1].rstrip("/")
        return self

    def admin(self, method: str, path: str) -> Any:
        """Call the emulator's admin API (`/_emulator/...`), e.g. stats."""
        context = ssl.create_default_context(cafile=self.ca_path)
        request = urllib.request.Request(f"{self.url}/_emulator{path}", method=method)
        with urllib.request.urlopen(request, context=context, timeout=60) as response:
            body = response.read()
        return json.loads(body) if body else None

    def stop(self) -> None:
        if self.process is None:
            return
        stop_process(self.process)
        self.process = None


def app_settings(arm_url: str, ca_path: str, storage_connection_string: str, rules_path: Path,
                 extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The app settings of the local stack: the emulator and Azurite, patient but quick retries."""
    defaults = {declared.ARM_POLLING_INTERVAL.name: "0.1", declared.RETRY_DEADLINE.name: "60",
                declared.RETRY_BASE_BACKOFF.name: "0.1", declared.RETRY_MAX_BACKOFF.name: "2"}
    return local_settings(arm_url, ca_path, storage_connection_string, rules_path=rules_path,
                          **{**defaults, **(extra or {})})


@dataclass
class LocalStack:
    state_dir: Path = STATE_DIR
    topology: Path | None = SAMPLE_TOPOLOGY
    rules: Path = SAMPLE_RULES
    app_spec: str = "function_app:app"
    host_port: int = 0
    operation_seconds: float = 0.2
    extra_settings: dict[str, str] = field(default_factory=dict)
    azurite: Azurite | None = field(default=None, init=False)
    emulator: EmulatorProcess | None = field(default=None, init=False)
    host: LocalFunctionsHost | None = field(default=None, init=False)
    settings: dict[str, str] = field(default_factory=dict, init=False)
    _saved_env: dict[str, str | None] = field(default_factory=dict, init=False, repr=False)

    def start(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        host = LocalFunctionsHost(load_app(self.app_spec), master_key=secrets.token_urlsafe(24),
                                  port=self.host_port)
        self.host = host
        self.azurite = Azurite(self.state_dir / "azurite").start()
        event_function = self.event_function()
        webhook = host.event_grid_url(event_function.name) if event_function else None
        self.emulator = EmulatorProcess(self.state_dir / "emulator", self.topology, webhook,
                                        self.operation_seconds).start()
        self.settings = app_settings(self.emulator.url, self.emulator.ca_path, self.azurite.connection_string,
                                     self.rules, self.extra_settings)
        self._apply_settings()
        self.write_settings_file()
        host.start()

    @property
    def settings_file(self) -> Path:
        return self.state_dir / "local.settings.json"

    def write_settings_file(self) -> None:
        """The settings this run started with, in local.settings.json form, for `poolsync --settings`."""
        document = {"IsEncrypted": False, "Values": self.settings}
        self.settings_file.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")

    def cli_command(self) -> str:
        """The one command that points the CLI at this stack."""
        return f"{REPO_ROOT / '.venv' / 'bin' / 'poolsync'} --settings {self.settings_file} pools"

    def _apply_settings(self) -> None:
        # The app reads its settings from the environment, as in Azure; the previous values come back
        # on stop so a test process is left as it was.
        for key, value in export_to_process(self.settings).items():
            self._saved_env.setdefault(key, value)
        set_runtime(None)  # built lazily from the settings above on first use

    def stop(self) -> None:
        if self.host is not None:
            self.host.stop()
            self.host = None
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None
        if self.azurite is not None:
            self.azurite.stop()
            self.azurite = None
        restore_process(self._saved_env)
        self._saved_env.clear()
        set_runtime(None)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the app offers ----------------------------------------------------------------------
    def _functions(self, trigger: str) -> list[Any]:
        assert self.host is not None
        return [f for f in self.host.functions() if f.trigger == trigger]

    def event_function(self) -> Any | None:
        candidates = self._functions(EVENT_GRID_TRIGGER)
        preferred = [f for f in candidates if f.name == EVENT_FUNCTION]
        return (preferred or candidates or [None])[0]

    def timer_functions(self) -> list[Any]:
        return self._functions(TIMER_TRIGGER)

    def sample_get_route(self) -> str | None:
        """A parameterless GET route to show in the banner and to self-test (pool listings first)."""
        routes = [f for f in self._functions(HTTP_TRIGGER)
                  if f.route is not None and not f.route.parameters
                  and (f.methods is None or "GET" in f.methods)]
        routes.sort(key=lambda f: ("pool" not in f.route.template.lower(), len(f.route.template)))
        return routes[0].route.template if routes else None

    def banner(self) -> str:
        assert self.host is not None and self.emulator is not None and self.azurite is not None
        host = self.host
        lines = [
            "poolsync local stack is up",
            f"  Functions host   {host.url}   (master/function key: {host.master_key})",
        ]
        functions = host.functions()
        for function in sorted(functions, key=lambda f: f.route.template if f.route else ""):
            if function.trigger == HTTP_TRIGGER and function.route is not None:
                methods = ",".join(sorted(function.methods)) if function.methods else "ANY"
                lines.append(f"    {methods:<7} {host.http_url(function.route.template)}")
        for function in sorted(functions, key=lambda f: f.name):
            if function.trigger == EVENT_GRID_TRIGGER:
                lines.append(f"    events  {host.event_grid_url(function.name, with_key=False)}")
            elif function.trigger != HTTP_TRIGGER:
                kind = function.trigger.removesuffix("trigger")
                lines.append(f"    {kind:<7} POST {host.admin_url(function.name)}")
        lines += [
            f"  ARM emulator     {self.emulator.url}   (CA {self.emulator.ca_path}, admin /_emulator/...)",
            f"  Azurite          blob :{self.azurite.blob_port}  queue :{self.azurite.queue_port}  "
            f"table :{self.azurite.table_port}",
            f"  rules            {self.rules}",
            f"  topology         {self.topology}",
            f"  state and logs   {self.state_dir}",
            "",
            "try:",
        ]
        route = self.sample_get_route()
        if route is not None:
            lines.append(f'  curl -s -H "x-functions-key: {host.master_key}" {host.http_url(route)}')
        for timer in self.timer_functions():
            lines.append(f'  curl -s -X POST -H "x-functions-key: {host.master_key}" '
                         f'-H "Content-Type: application/json" -d "{{}}" {host.admin_url(timer.name)}')
        lines.append(f"  {self.cli_command()}")
        lines.append("Ctrl-C stops everything.")
        return "\n".join(lines)
