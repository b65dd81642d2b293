"""SSRF: which receiver URLs are refused, and the address that was checked is the one used."""

from __future__ import annotations

import ipaddress

import pytest

from taas.app.webhooks.addresses import UnsafeUrl, check_url


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1/hook", "loopback"),
        ("http://127.8.9.10:8080/hook", "loopback"),
        ("https://10.1.2.3/hook", "private"),
        ("http://192.168.0.5/hook", "private"),
        ("http://172.16.0.1/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "a cloud metadata service"),
        ("http://169.254.10.10/", "link-local"),
        ("http://[::1]:9000/hook", "loopback"),
        ("http://[fd00:ec2::254]/", "a cloud metadata service"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://100.64.0.1/hook", "not public"),
        ("http://rebinding.example.com/hook", "loopback"),
        ("http://mixed.example.com/hook", "private"),  # one private answer is enough
    ],
)
def test_non_public_receivers_are_refused(url: str, kind: str) -> None:
    with pytest.raises(UnsafeUrl, match="TAAS_WEBHOOK_ALLOW_PRIVATE") as refused:
        check_url(url, allow_private=False)
    assert f"({kind})" in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.com/x",
        "file:///etc/passwd",
        "hooks.example.com/no-scheme",
        "http:///no-host",
        "http://user:pw@hooks.example.com/",
        "http://hooks.example.com:99999/",
        "http://nowhere.invalid/",
    ],
)
def test_malformed_or_unresolvable_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        check_url(url, allow_private=True)


def test_a_public_name_is_resolved_once_and_its_address_kept() -> None:
    target = check_url("https://hooks.example.com/taas?x=1", allow_private=False)
    assert target.address == ipaddress.ip_address("93.184.215.14")
    assert (target.scheme, target.host, target.port) == ("https", "hooks.example.com", 443)


def test_private_receivers_are_allowed_when_configured() -> None:
    target = check_url("http://receiver.test:8123/hook", allow_private=True)
    assert target.address == ipaddress.ip_address("127.0.0.1")
    assert target.port == 8123
