"""Each simulated client from its own loopback address, so the server's admission sees separate clients.

The server tells clients apart by their address, and one client holds at most
``KGQA_MAX_CONCURRENT`` places less the one kept for a client with nothing running. Load
sent from 127.0.0.1 alone is one client however many threads send it; Linux routes all of
127.0.0.0/8 to the loopback interface, so client ``n`` connects from its own address
(``client_address``) to a server listening on 127.0.0.1.

- ``client_address(n)``: 127.0.0.10 for the first client, then up (127.0.1.0 after 127.0.0.255).
- ``source_address(n, host)``: what ``http.client.HTTPConnection(source_address=...)`` takes,
  or None when ``host`` is not a loopback address (a remote server: the default address).
- ``client_from(address)``: a ``requests.Session`` whose connections leave from ``address``.
"""

from __future__ import annotations

import ipaddress
import socket

import requests
from requests.adapters import HTTPAdapter

LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
FIRST = 10  # 127.0.0.1 is the server's own; 2-9 are left for clients a bench names itself (127.0.0.2: the normal one)


def client_address(index: int, first: int = FIRST) -> str:
    """The loopback address of client ``index`` (0-based)."""
    if index < 0 or first < 1:
        raise ValueError(f"client index must be >= 0 and first >= 1, got index={index}, first={first}")
    address = LOOPBACK.network_address + first + index
    if address >= LOOPBACK.broadcast_address:
        raise ValueError(f"client {index} is past the last loopback address (127.255.255.254)")
    return str(address)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an IPv4 address) is one of 127.0.0.0/8, where any source address reaches it."""
    try:
        return ipaddress.IPv4Address(socket.gethostbyname(host)) in LOOPBACK
    except OSError:
        return False


def source_address(index: int, host: str) -> tuple[str, int] | None:
    """``(address, 0)`` for client ``index`` of a loopback server; None for any other host."""
    return (client_address(index), 0) if is_loopback(host) else None


class SourceAddress(HTTPAdapter):
    """Connections from one local address (any of 127.0.0.0/8 reaches a server on 127.0.0.1)."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def client_from(address: str) -> requests.Session:
    session = requests.Session()
    session.mount("http://", SourceAddress(address))
    return session
