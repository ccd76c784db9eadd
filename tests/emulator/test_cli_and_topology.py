"""Command line (as a subprocess), topology seeding incl. 5000 generated VMs, admin endpoints."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from azure.mgmt.network.models import BackendAddressPool

from emulator import Emulator
from shared.azure.clients import ArmSettings, compute_client, network_client
from tests.fixtures.arm import SUBSCRIPTION, ids

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "topologies"
OTHER_SUBSCRIPTION = "11111111-1111-1111-1111-111111111111"


def test_cli_serves_a_topology_and_stops_cleanly_on_sigterm(tmp_path):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulator",
            "--port",
            "0",
            "--state-dir",
            str(tmp_path),
            "--topology",
            str(EXAMPLES / "small.yaml"),
            "--operation-seconds",
            "0.01",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        line = process.stdout.readline()  # blocks until ready (or the process dies)
        match = re.fullmatch(r"listening on (https://127\.0\.0\.1:(\d+))\n", line)
        assert match, (line, process.stderr.read() if process.poll() is not None else "")
        assert int(match[2]) > 0
        ca = tmp_path / "ca.pem"
        assert ca.read_text().startswith("-----BEGIN CERTIFICATE-----")

        settings = ArmSettings(endpoint=match[1], ca_bundle=str(ca), static_token="x", polling_interval=0.05)
        network = network_client(settings, SUBSCRIPTION)
        assert sorted(
            p.name for p in network.load_balancer_backend_address_pools.list("rg-poolsync", "lb-app")
        ) == [
            "pool-manual",
            "pool-web",
        ]
        written = network.load_balancer_backend_address_pools.begin_create_or_update(
            "rg-poolsync", "lb-app", "pool-web", BackendAddressPool()
        ).result()
        assert written.provisioning_state == "Succeeded"

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        process.stdout.close()
        process.stderr.close()


def test_small_example_topology_models_every_kind_of_nic(arm, network, compute):
    arm.reset(EXAMPLES / "small.yaml")
    assert sorted(v.name for v in compute.virtual_machines.list_all()) == ["db-1", "web-1", "web-2", "web-3"]
    db = compute.virtual_machines.get("rg-poolsync", "db-1")
    assert [(n.id.rsplit("/", 1)[1], n.primary) for n in db.network_profile.network_interfaces] == [
        ("db-1-nic", True),
        ("db-1-nic-2", False),
    ]
    assert network.network_interfaces.get("rg-poolsync", "db-1-nic").ip_configurations[
        0
    ].private_ip_address == ("10.0.1.10")
    assert network.network_interfaces.get("rg-poolsync", "spare-nic").virtual_machine is None
    assert network.network_interfaces.get("rg-poolsync", "pe-sql-nic").private_endpoint is not None
    manual = network.load_balancer_backend_address_pools.get("rg-poolsync", "lb-app", "pool-manual")
    assert [a.ip_address for a in manual.load_balancer_backend_addresses] == ["10.0.1.40"]
    lb = network.load_balancers.get("rg-poolsync", "lb-app")
    assert [r.name for r in lb.inbound_nat_rules] == ["ssh-1"]
    web_pool = next(p for p in lb.backend_address_pools if p.name == "pool-web")
    assert [r.id.rsplit("/", 1)[1] for r in web_pool.load_balancing_rules] == ["http"]


def test_multiple_subscriptions_are_served(arm, arm_settings):
    arm.reset(EXAMPLES / "multi-subscription.yaml")
    other = compute_client(arm_settings, OTHER_SUBSCRIPTION)
    assert sorted(v.name for v in other.virtual_machines.list_all()) == ["b-1", "b-2"]
    default = compute_client(arm_settings, SUBSCRIPTION)
    assert sorted(v.name for v in default.virtual_machines.list_all()) == ["a-1", "a-2"]


@pytest.mark.slow
def test_seeding_5000_generated_vms(arm, network, compute):
    counts = arm.load_topology(EXAMPLES / "scale-5000.json")
    assert counts["virtual_machines"] == 5000
    arm.page_size = 1000
    nics = list(network.network_interfaces.list("rg-scale"))
    assert len(nics) == 5002
    ips = [n.ip_configurations[0].private_ip_address for n in nics]
    assert len(set(ips)) == len(ips)
    vms = list(compute.virtual_machines.list_all())
    assert len(vms) == 5000
    assert vms[0].tags["poolsync-pool"] == "pool-web"
    nic_pool = network.load_balancer_backend_address_pools.get("rg-scale", "lb-scale", "pool-nic")
    assert len(nic_pool.backend_ip_configurations) == 2


def test_world_api_adds_manual_pool_entries_without_http(arm, network):
    arm.reset(EXAMPLES / "small.yaml")
    pool_id = ids.pool("pool-web", lb="lb-app")
    arm.world.add_pool_address(pool_id, "hand-made", "10.0.0.77", ids.vnet("vnet-app"), admin_state="Down")
    pool = network.load_balancer_backend_address_pools.get("rg-poolsync", "lb-app", "pool-web")
    assert [(a.name, a.ip_address, a.admin_state) for a in pool.load_balancer_backend_addresses] == [
        ("hand-made", "10.0.0.77", "Down")
    ]
    assert arm.world.pool_address_ips(pool_id) == ["10.0.0.77"]
    assert arm.stats.requests() == 1  # only the SDK GET went over HTTP


def test_admin_endpoints_reset_load_configure_and_report(arm, raw):
    def admin(method, path, **kwargs):
        return requests.request(
            method, f"{arm.url}/_emulator{path}", verify=arm.ca_path, timeout=30, **kwargs
        )

    loaded = admin(
        "POST",
        "/reset",
        json={
            "virtual_networks": [
                {
                    "name": "vnet-app",
                    "address_space": ["10.0.0.0/16"],
                    "subnets": [{"name": "default", "prefix": "10.0.0.0/24"}],
                }
            ]
        },
    )
    assert loaded.json()["world"]["virtualNetworks"] == 1
    added = admin(
        "POST",
        "/topology",
        json={"virtual_machines": [{"name": "x-{i}", "count": 2, "subnet": "vnet-app/default"}]},
    )
    assert added.json()["world"]["virtualMachines"] == 2

    assert admin("POST", "/config", json={"page_size": 1, "operation_seconds": 0.01}).json()["page_size"] == 1
    assert (
        "nextLink"
        in raw.get(f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Network/networkInterfaces").json()
    )

    stats = admin("GET", "/stats").json()
    assert stats["requests"] == {"GET Microsoft.Network/networkInterfaces": 1}
    assert admin("POST", "/stats/reset").status_code == 204
    assert admin("GET", "/stats").json()["requests"] == {}
    assert admin("GET", "/health").json()["status"] == "ok"


def test_emulator_python_api_starts_on_a_free_port_and_stops(tmp_path):
    with Emulator(state_dir=tmp_path, topology=EXAMPLES / "small.yaml") as emulator:
        assert re.fullmatch(r"https://127\.0\.0\.1:\d+", emulator.url)
        response = requests.get(f"{emulator.url}/_emulator/health", verify=emulator.ca_path, timeout=30)
        assert response.json()["world"]["virtualMachines"] == 4
