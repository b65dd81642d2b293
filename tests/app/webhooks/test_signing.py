"""Signatures as the Standard Webhooks reference computes them, checked independently."""

from __future__ import annotations

import base64
import hashlib
import hmac

from taas.app.webhooks.signing import new_secret, secret_key, signature, signed_headers


def reference_signature(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """The spec's algorithm, written out: HMAC-SHA256 keyed with the secret's base64-decoded
    bytes (after ``whsec_``), over ``id.timestamp.body``, base64, prefixed ``v1,``."""
    key = base64.b64decode(secret.split("_", 1)[1])
    content = f"{message_id}.{timestamp}.{body}".encode()
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def test_signature_matches_the_reference_algorithm() -> None:
    secret = new_secret()
    body = '{"type": "job.succeeded", "data": {"job_id": "job_1"}}'
    assert signature(secret, "msg_abc", 1_700_000_000, body) == reference_signature(
        secret, "msg_abc", 1_700_000_000, body
    )


def test_signature_matches_the_specs_published_example() -> None:
    # The example in the Standard Webhooks specification and its reference libraries.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = '{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected


def test_secrets_have_the_whsec_form_with_32_random_bytes() -> None:
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_")
    assert first != second
    assert len(secret_key(first)) == 32


def test_headers_carry_the_id_the_timestamp_and_the_signature() -> None:
    secret = new_secret()
    headers = signed_headers(secret, "msg_1", 42, "{}")
    assert headers == {
        "webhook-id": "msg_1",
        "webhook-timestamp": "42",
        "webhook-signature": reference_signature(secret, "msg_1", 42, "{}"),
    }


def test_a_changed_body_or_timestamp_changes_the_signature() -> None:
    secret = new_secret()
    original = signature(secret, "msg_1", 42, '{"a": 1}')
    assert signature(secret, "msg_1", 42, '{"a": 2}') != original
    assert signature(secret, "msg_1", 43, '{"a": 1}') != original
    assert signature(new_secret(), "msg_1", 42, '{"a": 1}') != original
