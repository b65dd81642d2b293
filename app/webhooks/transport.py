"""One HTTP POST of a signed delivery to a checked address (app/webhooks/addresses.py).

The connection goes to the address that was checked, with the receiver's name in the Host header
and in TLS (SNI and the certificate check), so DNS cannot send it elsewhere. Redirects are not
followed; at most ``RESPONSE_READ_CAP`` bytes of the answer are read and a short prefix kept.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

import httpx

from taas.app.webhooks.addresses import DEFAULT_PORTS, Target

RESPONSE_READ_CAP = 1024
RESPONSE_PREFIX_BYTES = 256
USER_AGENT = "taas-webhooks/1"


@dataclass(frozen=True)
class Answer:
    """What the receiver said, or why nothing was heard (``error``)."""

    status_code: int | None = None
    retry_after: str | None = None
    body_prefix: str | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def address_url(target: Target, url: str) -> str:
    """The URL with its host replaced by the checked address (bracketed if IPv6)."""
    parts = httpx.URL(url)
    host = f"[{target.address}]" if isinstance(target.address, ipaddress.IPv6Address) else None
    return str(parts.copy_with(host=host or str(target.address), port=target.port))


def host_header(target: Target) -> str:
    default = DEFAULT_PORTS[target.scheme] == target.port
    name = f"[{target.host}]" if ":" in target.host else target.host
    return name if default else f"{name}:{target.port}"


def post(target: Target, headers: dict[str, str], body: str, timeout: float) -> Answer:
    """POST ``body`` to the target; never raises for what the network or the receiver does."""
    request_headers = {
        **headers,
        "Host": host_header(target),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Accept-Encoding": "identity",  # the prefix we keep should be readable, not gzip
    }
    deadline = time.monotonic() + timeout
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
            client.stream(
                "POST",
                address_url(target, target.url),
                content=body.encode(),
                headers=request_headers,
                extensions={"sni_hostname": target.host},
            ) as response,
        ):
            prefix = _read_prefix(response, deadline)
            return Answer(response.status_code, response.headers.get("retry-after"), prefix)
    except httpx.TimeoutException:
        return Answer(error=f"timed out after {timeout:g} s")
    except httpx.HTTPError as error:
        return Answer(error=f"{type(error).__name__}: {str(error)[:200]}")


def _read_prefix(response: httpx.Response, deadline: float) -> str:
    """The answer's first bytes, reading no more than the cap and no later than the deadline."""
    read = b""
    for chunk in response.iter_raw(RESPONSE_READ_CAP):
        read += chunk
        if len(read) >= RESPONSE_READ_CAP or time.monotonic() > deadline:
            break
    return read[:RESPONSE_PREFIX_BYTES].decode(errors="replace")
