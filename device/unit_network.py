"""Which addresses the device unit lets the door controller reach: none, or the SIP2 server.

``systemd/omaovi-device.service`` gives the device no network at all
(``PrivateNetwork=yes``, ``IPAddressDeny=any``, ``RestrictAddressFamilies=AF_UNIX``).
With a ``[sip2]`` section the device asks the library system at tap time, so the
installer adds a drop-in (``sip2_dropin``) that lets exactly the SIP2 server's
addresses through: IP address filtering stays deny-all, with an allow-list.

``may_connect`` reads a unit and its drop-ins the way systemd merges them and says
whether the process could open a TCP connection to an address. ``omaovi doctor``
uses it on the installed files, so "doctor OK, door offline" cannot happen: a
unit that would block the SIP2 server fails the check.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from pathlib import Path

from device.config import Sip2Settings

DROPIN_NAME = "sip2.conf"
_SETTINGS = ("PrivateNetwork", "RestrictAddressFamilies", "IPAddressAllow", "IPAddressDeny")
#: systemd's symbolic names for IPAddressAllow=/IPAddressDeny=.
_SYMBOLIC = {
    "any": ("0.0.0.0/0", "::/0"),
    "localhost": ("127.0.0.0/8", "::1/128"),
    "link-local": ("169.254.0.0/16", "fe80::/64"),
    "multicast": ("224.0.0.0/4", "ff00::/8"),
}
_TRUE = ("1", "yes", "true", "on")


def resolve(host: str) -> list[str]:
    """Every address ``host`` has now (the device connects to one of them)."""
    found = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    return sorted(found, key=lambda a: (":" in a, a))


def nameservers(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The DNS servers the device asks to resolve a host name."""
    try:
        lines = resolv_conf.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return [line.split()[1] for line in lines if line.split()[:1] == ["nameserver"] and len(line.split()) > 1]


def sip2_dropin(
    settings: Sip2Settings,
    *,
    resolve: Callable[[str], list[str]] = resolve,
    nameservers: Callable[[], list[str]] = nameservers,
) -> str:
    """The drop-in that lets the device reach the SIP2 server and nothing else.

    A host name is resolved now, and the DNS servers are let through too, since
    the device resolves the name at each connection. An IP address in the config
    keeps DNS out. Run the installer again when the server's address changes.
    """
    addresses = resolve(settings.host)
    if not addresses:
        raise ValueError(f"sip2.host {settings.host}: has no address")
    dns = [] if _is_address(settings.host) else nameservers()
    lines = [
        "# Written by omaovi sip2-dropin (systemd/install.sh) from the [sip2] section: the",
        f"# device asks the library system at {settings.host}:{settings.port} at tap time, and",
        "# may reach that server and nothing else. IPAddressDeny=any stays from the unit.",
        "[Service]",
        "PrivateNetwork=no",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "IPAddressAllow=" + " ".join(addresses),
    ]
    if dns:
        lines.insert(-1, f"# {settings.host} is resolved at each connection: the DNS servers too.")
        lines.append("IPAddressAllow=" + " ".join(dns))
    return "\n".join(lines) + "\n"


def unit_settings(texts: Iterable[str]) -> dict[str, list[str]]:
    """The network settings of a unit followed by its drop-ins, merged as systemd does:
    list settings add up and an empty assignment clears them; a boolean's last one wins."""
    merged: dict[str, list[str]] = {name: [] for name in _SETTINGS}
    for text in texts:
        section = None
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line
                continue
            name, sep, value = line.partition("=")
            name, value = name.strip(), value.strip()
            if section != "[Service]" or not sep or name not in _SETTINGS:
                continue
            if name == "PrivateNetwork":
                merged[name] = [value]
            elif not value:
                merged[name] = []
            elif name == "RestrictAddressFamilies":
                merged[name] = value.split()  # an allow-list; a later one replaces it
            else:
                merged[name] += value.split()
    return merged


def may_connect(texts: Iterable[str], address: str) -> bool:
    """Whether a process under these unit texts can open a TCP connection to ``address``."""
    settings = unit_settings(texts)
    ip = ipaddress.ip_address(address)
    if settings["PrivateNetwork"] and settings["PrivateNetwork"][-1].lower() in _TRUE:
        return False
    family = "AF_INET6" if ip.version == 6 else "AF_INET"
    families = settings["RestrictAddressFamilies"]
    if families and families[0].startswith("~"):  # a deny-list
        if family in {f.lstrip("~") for f in families}:
            return False
    elif families and family not in families:
        return False
    # systemd: an address on the allow-list passes; otherwise one on the deny-list is dropped.
    if _matches(settings["IPAddressAllow"], ip):
        return True
    return not _matches(settings["IPAddressDeny"], ip)


def installed_unit_texts(unit_dir: Path, unit: str = "omaovi-device.service") -> list[str]:
    """The unit file and its drop-ins (in name order, as systemd reads them); [] if not installed."""
    path = unit_dir / unit
    if not path.is_file():
        return []
    dropins = sorted((unit_dir / f"{unit}.d").glob("*.conf"))
    return [path.read_text(encoding="utf-8"), *(p.read_text(encoding="utf-8") for p in dropins)]


def _matches(entries: list[str], ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    for entry in entries:
        for prefix in _SYMBOLIC.get(entry, (entry,)):
            network = ipaddress.ip_network(prefix, strict=False)
            if network.version == ip.version and ip in network:
                return True
    return False


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
