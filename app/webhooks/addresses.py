"""Where a webhook may be sent: SSRF protection.

A receiver's name is resolved once; if any of its addresses is not a public one (loopback,
private, link-local, multicast, unspecified, reserved, the clouds' metadata service), it is
refused, unless private receivers are allowed (TAAS_WEBHOOK_ALLOW_PRIVATE). The sender then
connects to the very address that was checked, so a name that resolves differently a moment
later (DNS rebinding) cannot take it elsewhere.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
DEFAULT_PORTS = {"http": 80, "https": 443}


class UnsafeUrl(ValueError):
    """A receiver URL that may not be used; the message says why."""


@dataclass(frozen=True)
class Target:
    """A checked receiver: the URL as given and the address to connect to."""

    url: str
    scheme: str
    host: str  # the name, for the Host header and TLS's SNI and certificate check
    port: int
    address: IPAddress


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the name resolves to (the boundary tests replace)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise UnsafeUrl(f"host {host!r} does not resolve: {error}") from error
    # An IPv6 link-local answer carries its zone ("fe80::1%eth0"): the address is before it.
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def why_not_public(address: IPAddress) -> str | None:
    """None for an address on the public internet, else what kind it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return why_not_public(address.ipv4_mapped)
    checks = (
        (address in METADATA_ADDRESSES, "a cloud metadata service"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address.is_unspecified, "unspecified"),
        (address.is_private, "private"),
        (not address.is_global, "not public"),  # reserved, shared (100.64/10), documentation
    )
    return next((kind for refused, kind in checks if refused), None)


def parse_url(url: str) -> SplitResult:
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS:
        raise UnsafeUrl(f"url {url[:100]!r}: the scheme must be http or https")
    if not parts.hostname:
        raise UnsafeUrl(f"url {url[:100]!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl(f"url {url[:100]!r}: credentials in the URL are not supported")
    try:
        parts.port  # noqa: B018  (raises on a port out of range)
    except ValueError as error:
        raise UnsafeUrl(f"url {url[:100]!r}: {error}") from error
    return parts


def check_url(url: str, *, allow_private: bool) -> Target:
    """Resolve the URL's host and check every address; the target connects to the first."""
    parts = parse_url(url)
    host = parts.hostname or ""
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    addresses = _literal(host) or resolve(host, port)
    if not addresses:
        raise UnsafeUrl(f"host {host!r} has no address")
    if not allow_private:
        for address in addresses:
            kind = why_not_public(address)
            if kind is not None:
                raise UnsafeUrl(
                    f"url {url[:100]!r}: host {host!r} is {address} ({kind}); "
                    "webhooks go to public addresses only (TAAS_WEBHOOK_ALLOW_PRIVATE)"
                )
    return Target(url, parts.scheme, host, port, addresses[0])


def _literal(host: str) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        return []
