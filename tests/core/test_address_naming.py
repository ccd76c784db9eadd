"""Backend-address names: deterministic, case-insensitive, valid for Azure, recognisable, collision-safe."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core.naming import AZURE_NAME_RE, address_name, is_managed_name
from tests.core.unit_factories import nic_id

NIC = nic_id("web-01-nic")


def test_name_is_readable_and_deterministic():
    name = address_name(NIC, "ipconfig1")
    assert name == address_name(NIC, "ipconfig1")
    assert name.startswith("psync-web-01-nic-ipconfig1-")
    assert len(name) == len("psync-web-01-nic-ipconfig1-") + 16


def test_name_ignores_the_case_of_nic_id_and_ipconfig_name():
    assert address_name(NIC, "ipconfig1") == address_name(NIC.upper(), "IPConfig1")
    assert address_name(NIC + "/", "ipconfig1") == address_name(NIC, "ipconfig1")


def test_different_nics_or_ipconfigs_get_different_names():
    names = {
        address_name(NIC, "ipconfig1"),
        address_name(NIC, "ipconfig2"),
        address_name(nic_id("web-01-nic", rg="rg-other"), "ipconfig1"),
        address_name(nic_id("web-02-nic"), "ipconfig1"),
    }
    assert len(names) == 4


def test_long_names_sharing_a_truncated_prefix_do_not_collide():
    stem = "n" * 120
    first = address_name(nic_id(stem[:80]), "ipconfig-" + "a" * 60 + "1")
    second = address_name(nic_id(stem[:80]), "ipconfig-" + "a" * 60 + "2")
    assert first[:-16] == second[:-16]  # same readable part after truncation
    assert first != second
    assert len(first) == 80 and is_managed_name(first) and AZURE_NAME_RE.match(first)


def test_odd_characters_are_replaced_and_ends_stay_valid():
    name = address_name(nic_id("Web(01)"), "ip config#1")
    assert name.startswith("psync-web-01-")
    assert AZURE_NAME_RE.match(name)


def test_is_managed_name_recognises_only_poolsyncs_shape():
    assert is_managed_name(address_name(NIC, "ipconfig1"))
    assert is_managed_name(address_name(NIC, "ipconfig1").upper())  # Azure names are case-insensitive
    for foreign in (
        "web-01",
        "psync-web-01",  # no hash suffix
        "psync-web-01-0123456789abcde",  # 15 hex digits
        "psync-web-01-0123456789abcdeg",  # not hex
        "xpsync-web-01-0123456789abcdef",
        "psync-" + "a" * 60 + "-0123456789abcdef",  # 83 chars: longer than Azure allows
    ):
        assert not is_managed_name(foreign), foreign


segment = st.text(min_size=1, max_size=120)


@settings(max_examples=300, deadline=None)
@given(nic_name=segment, ipconfig=segment)
def test_any_input_gives_a_valid_managed_azure_name(nic_name, ipconfig):
    name = address_name(
        f"/subscriptions/x/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/{nic_name}",
        ipconfig,
    )
    assert 1 <= len(name) <= 80
    assert AZURE_NAME_RE.match(name), name
    assert is_managed_name(name)


@settings(max_examples=200, deadline=None)
@given(
    pairs=st.sets(
        st.tuples(st.text(alphabet="abcXYZ-_.()", min_size=1, max_size=100), segment), min_size=2, max_size=8
    )
)
def test_distinct_pairs_get_distinct_names(pairs):
    lowered = {(nic.lower(), ipc.lower()) for nic, ipc in pairs}
    names = {address_name(nic_id(nic), ipc) for nic, ipc in pairs}
    assert len(names) == len(lowered)
