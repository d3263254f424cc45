"""How the device unit's network settings merge, as systemd reads a unit and its drop-ins."""

from pathlib import Path

import pytest

from device.config import Sip2Settings
from device.unit_network import may_connect, sip2_dropin, unit_settings

UNIT = (Path(__file__).resolve().parent.parent / "systemd/omaovi-device.service").read_text()


def settings(host: str) -> Sip2Settings:
    return Sip2Settings(host=host, port=6001, username="ovi", password_file=Path("p"), institution="K", profile="koha")


def test_the_shipped_unit_reaches_nothing():
    assert not may_connect([UNIT], "192.0.2.10")
    assert not may_connect([UNIT], "127.0.0.1")


def test_a_host_name_lets_its_addresses_and_the_dns_servers_through():
    dropin = sip2_dropin(settings("sip2.kirjasto.example"), resolve=lambda host: ["198.51.100.7", "2001:db8::7"],
                         nameservers=lambda: ["192.0.2.53"])
    for allowed in ("198.51.100.7", "2001:db8::7", "192.0.2.53"):
        assert may_connect([UNIT, dropin], allowed), allowed
    assert not may_connect([UNIT, dropin], "198.51.100.8")


def test_an_address_in_the_config_keeps_dns_out():
    dropin = sip2_dropin(settings("198.51.100.7"), resolve=lambda host: [host], nameservers=lambda: ["192.0.2.53"])
    assert may_connect([UNIT, dropin], "198.51.100.7")
    assert not may_connect([UNIT, dropin], "192.0.2.53")


SIP2_ADDRESS, OTHER = "198.51.100.7", "203.0.113.1"


@pytest.mark.parametrize("extra, address, expected", [
    ("", SIP2_ADDRESS, True),
    ("", OTHER, False),
    ("[Service]\nPrivateNetwork=yes\n", SIP2_ADDRESS, False),  # a later drop-in takes the network away again
    ("[Service]\nRestrictAddressFamilies=AF_UNIX\n", SIP2_ADDRESS, False),
    ("[Service]\nIPAddressAllow=\n", SIP2_ADDRESS, False),     # an empty assignment clears the allow-list
    ("[Service]\nIPAddressDeny=\n", OTHER, True),              # ... and the deny-list
    ("[Unit]\nIPAddressAllow=any\n", OTHER, False),            # not [Service]: ignored
])
def test_later_drop_ins_change_the_outcome_as_systemd_merges_them(extra, address, expected):
    dropin = sip2_dropin(settings(SIP2_ADDRESS), resolve=lambda host: [host], nameservers=list)
    assert may_connect([UNIT, dropin, extra], address) is expected


def test_symbolic_names_are_read():
    assert unit_settings(["[Service]\nIPAddressAllow=localhost\n"])["IPAddressAllow"] == ["localhost"]
    assert may_connect(["[Service]\nIPAddressDeny=any\nIPAddressAllow=localhost\n"], "127.0.0.2")
