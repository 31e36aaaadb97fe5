"""Which webhook URLs, addresses and signing secrets are accepted, and the signature, without a network."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from ipaddress import ip_address

import pytest
from standardwebhooks import Webhook

from notify_svc.channels.addresses import address_problem
from notify_svc.channels.webhook import (
    WebhookPolicy,
    new_signing_secret,
    sign,
    signing_secret_problem,
    webhook_url_problem,
)

DEFAULT = WebhookPolicy()
PRIVATE = WebhookPolicy(allow_private_networks=True)
HTTP_LOOPBACK = WebhookPolicy(allow_http_loopback=True)
LOCAL = WebhookPolicy(allow_http_loopback=True, allow_private_networks=True)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/notify",
        "https://hooks.example.com:8443/notify?token=abc&x=1",
        "https://hooks.example.com/notify#dropped-fragment",
        "HTTPS://Hooks.Example.COM/",
        "https://hooks.example.com./",
        "https://bücher.example/",
        "https://8.8.8.8/notify",
        "https://[2606:4700::1111]:444/notify",
        "https://[::ffff:8.8.8.8]/notify",
        "https://my_app.example.com/",
        "https://example.com/" + "a" * (2048 - len("https://example.com/")),
    ],
)
def test_public_https_urls_are_accepted_by_default(url: str) -> None:
    assert webhook_url_problem(url, DEFAULT) is None


@pytest.mark.parametrize(
    ("url", "because"),
    [
        ("", "empty"),
        ("https://example.com/" + "a" * 2048, "longer than 2048"),
        ("hooks.example.com/notify", "https://"),
        ("ftp://hooks.example.com/", "https://"),
        ("javascript:alert(1)", "https://"),
        ("http://hooks.example.com/", "https://"),
        ("http://127.0.0.1:8080/", "https://"),
        ("https://user:secret@hooks.example.com/", "user name or password"),
        ("https://user@hooks.example.com/", "user name or password"),
        ("https://@hooks.example.com/", "user name or password"),
        ("https://127.0.0.1:80\\@hooks.example.com/", "not valid"),
        ("https:///notify", "no host"),
        ("https://hooks example.com/", "spaces or control characters"),
        ("https://hooks.example.com/\r\nX-Injected: 1", "spaces or control characters"),
        ("https://hooks..example.com/", "not a valid host name"),
        ("https://-hooks.example.com/", "not a valid host name"),
        ("https://hooks.example.com:0/", "port"),
        ("https://hooks.example.com:99999/", "not valid"),
        ("https://2130706433/", "numeric address"),
        ("https://0x7f.1/", "numeric address"),
        ("https://127.1/", "numeric address"),
        ("https://[fe80::1%25eth0]/", "network interface"),
        ("https://127.0.0.1/", "loopback"),
        ("https://[::1]/", "loopback"),
        ("https://[::ffff:127.0.0.1]/", "loopback"),
        ("https://[::127.0.0.1]/", "loopback"),
        ("https://localhost/", "own host"),
        ("https://LOCALHOST./", "own host"),
        ("https://api.localhost/", "own host"),
        ("https://10.0.0.1/", "private"),
        ("https://192.168.1.1/", "private"),
        ("https://[fd12:3456::1]/", "private"),
        ("https://169.254.1.1/", "link-local"),
        ("https://169.254.169.254/latest/meta-data/", "metadata"),
        ("https://[fd00:ec2::254]/", "metadata"),
        ("https://[::ffff:169.254.169.254]/", "metadata"),
        ("https://100.64.0.1/", "carrier-grade NAT"),
        ("https://0.0.0.0/", "unspecified"),
        ("https://[::]/", "unspecified"),
        ("https://224.0.0.1/", "multicast"),
        ("https://240.0.0.1/", "reserved"),
    ],
)
def test_unsafe_or_malformed_urls_are_refused_by_default(url: str, because: str) -> None:
    problem = webhook_url_problem(url, DEFAULT)

    assert problem is not None
    assert because in problem


@pytest.mark.parametrize(
    ("url", "policy", "accepted"),
    [
        ("https://10.0.0.1/", PRIVATE, True),
        ("https://127.0.0.1:8443/", PRIVATE, True),
        ("https://localhost:8443/", PRIVATE, True),
        ("https://[::1]/", PRIVATE, True),
        ("https://169.254.1.1/", PRIVATE, True),
        ("https://169.254.169.254/", PRIVATE, False),
        ("https://[fd00:ec2::254]/", PRIVATE, False),
        ("https://[::ffff:169.254.169.254]/", PRIVATE, False),
        ("https://100.64.0.1/", PRIVATE, False),
        ("https://0.0.0.0/", PRIVATE, False),
        ("http://127.0.0.1:8080/", PRIVATE, False),
        ("http://127.0.0.1:8080/", HTTP_LOOPBACK, False),
        ("http://localhost:8080/", HTTP_LOOPBACK, False),
        ("http://127.0.0.1:8080/hook", LOCAL, True),
        ("http://localhost:8080/hook", LOCAL, True),
        ("http://[::1]:8080/hook", LOCAL, True),
        ("http://[::ffff:127.0.0.1]:8080/hook", LOCAL, True),
        ("http://10.0.0.1/", LOCAL, False),
        ("http://hooks.example.com/", LOCAL, False),
        ("http://user:secret@127.0.0.1:8080/", LOCAL, False),
        ("http://169.254.169.254/", LOCAL, False),
    ],
)
def test_the_policy_switches_allow_only_what_they_name(url: str, policy: WebhookPolicy, accepted: bool) -> None:
    assert (webhook_url_problem(url, policy) is None) is accepted


@pytest.mark.parametrize(
    ("address", "default", "private_allowed"),
    [
        ("93.184.215.14", True, True),
        ("2606:4700::1111", True, True),
        ("::ffff:8.8.8.8", True, True),
        ("64:ff9b::808:808", True, True),
        ("2002:808:808::1", True, True),
        ("127.0.0.1", False, True),
        ("127.9.9.9", False, True),
        ("::1", False, True),
        ("::ffff:127.0.0.1", False, True),
        ("::127.0.0.1", False, True),
        ("64:ff9b::7f00:1", False, True),
        ("2002:7f00:1::1", False, True),
        ("10.1.2.3", False, True),
        ("172.16.0.1", False, True),
        ("192.168.0.1", False, True),
        ("fc00::1", False, True),
        ("fec0::1", False, True),
        ("169.254.10.10", False, True),
        ("fe80::1%2", False, True),
        ("169.254.169.254", False, False),
        ("::ffff:169.254.169.254", False, False),
        ("fd00:ec2::254", False, False),
        ("100.64.0.1", False, False),
        ("100.127.255.254", False, False),
        ("0.0.0.0", False, False),
        ("0.1.2.3", False, False),
        ("::", False, False),
        ("224.0.0.251", False, False),
        ("ff02::1", False, False),
        ("240.0.0.1", False, False),
        ("255.255.255.255", False, False),
    ],
)
def test_addresses_are_judged_by_what_they_reach(address: str, default: bool, private_allowed: bool) -> None:
    parsed = ip_address(address)

    assert (address_problem(parsed, allow_private_networks=False) is None) is default
    assert (address_problem(parsed, allow_private_networks=True) is None) is private_allowed


def _secret_of(size: int) -> str:
    return "whsec_" + base64.b64encode(bytes(range(size))).decode()


@pytest.mark.parametrize(
    "secret",
    [_secret_of(24), _secret_of(32), _secret_of(64), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
)
def test_well_formed_signing_secrets_are_accepted(secret: str) -> None:
    assert signing_secret_problem(secret) is None


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "whsec_",
        _secret_of(32)[len("whsec_") :],
        "WHSEC_" + _secret_of(32)[len("whsec_") :],
        _secret_of(23),
        _secret_of(65),
        _secret_of(32).rstrip("="),
        _secret_of(32)[:10] + " " + _secret_of(32)[10:],
        "whsec_" + "!" * 44,
        "whsec_" + "é" * 44,
        "whsec_" + "A" * 100_000,
    ],
)
def test_malformed_signing_secrets_are_refused_without_repeating_them(secret: str) -> None:
    problem = signing_secret_problem(secret)

    assert problem is not None
    assert secret[len("whsec_") :][:8] not in problem or not secret[len("whsec_") :]


def test_new_signing_secrets_are_well_formed_and_differ() -> None:
    secrets = {new_signing_secret() for _ in range(20)}

    assert len(secrets) == 20
    assert all(signing_secret_problem(secret) is None for secret in secrets)
    assert all(len(base64.b64decode(secret[len("whsec_") :])) == 32 for secret in secrets)


def test_the_signature_matches_the_standard_webhooks_library() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    message_id = "msg_p5jXN8AQM9LWM0D4loKWxJek"
    timestamp = 1614265330
    body = '{"test": 2432232314, "title": "Pay rent ✓"}'.encode()

    expected = Webhook(secret).sign(message_id, datetime.fromtimestamp(timestamp, UTC), body.decode())

    assert sign(secret, message_id, timestamp, body) == expected


def test_the_signature_covers_id_timestamp_and_body() -> None:
    secret = new_signing_secret()
    signature = sign(secret, "n-1", 1_700_000_000, b"{}")

    assert signature.startswith("v1,")
    assert sign(secret, "n-2", 1_700_000_000, b"{}") != signature
    assert sign(secret, "n-1", 1_700_000_001, b"{}") != signature
    assert sign(secret, "n-1", 1_700_000_000, b'{"a":1}') != signature
    assert sign(new_signing_secret(), "n-1", 1_700_000_000, b"{}") != signature


def test_signing_with_a_malformed_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        sign("whsec_short", "n-1", 1_700_000_000, b"{}")


def test_a_policy_without_time_to_answer_is_refused() -> None:
    with pytest.raises(ValueError):
        WebhookPolicy(timeout_seconds=0)
