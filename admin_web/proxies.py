"""The client's address when the staff page sits behind a proxy on the same machine or LAN.

Behind a local HTTPS proxy every request comes from 127.0.0.1, so the login
throttle would count all staff as one client and one attacker would lock them all
out. ``X-Forwarded-For`` says who the client was, but anyone can send it, so it
is believed only from the addresses in ``[web] trusted_proxies``, and only as far
back as those proxies go: the first address from the right that is not a trusted
proxy is the client.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    # A dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d.
    return address.ipv4_mapped if address.version == 6 and address.ipv4_mapped else address


def client_address(peer: str, forwarded_for: str, trusted: Iterable[Network]) -> str:
    """The address the throttle and the audit log give a request.

    ``peer`` is the socket's address; ``forwarded_for`` the X-Forwarded-For header
    (several headers joined with commas). A hop that is not an IP address stops
    the walk: what lies left of it cannot be told apart from what a client wrote.
    """
    trusted = tuple(trusted)
    hops = [hop for hop in forwarded_for.split(",") if hop.strip()]
    current = _address(peer)
    while current is not None and hops and any(current in network for network in trusted):
        earlier = _address(hops.pop())
        if earlier is None:
            break
        current = earlier
    return str(current) if current is not None else peer


class ClientAddress:
    """WSGI middleware: REMOTE_ADDR becomes the client's address, for every view and the audit log alike."""

    def __init__(self, app, trusted: Iterable[str]):
        self.app = app
        self.trusted = tuple(ipaddress.ip_network(network) for network in trusted)

    def __call__(self, environ, start_response):
        environ["REMOTE_ADDR"] = client_address(
            environ.get("REMOTE_ADDR", ""), environ.get("HTTP_X_FORWARDED_FOR", ""), self.trusted
        )
        return self.app(environ, start_response)
