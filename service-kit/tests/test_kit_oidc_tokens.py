"""OpenID Connect tokens: a local provider (real HTTP on 127.0.0.1) serving discovery and JWKS, keys made with
cryptography, verified by todo_kit.oidc; rotation, outages, every refusal, and a host serving a real call."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from todo_contracts.task.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc
from todo_kit.auth import issue_token
from todo_kit.config import ConfigError, Settings
from todo_kit.errors import Unauthenticated
from todo_kit.oidc import OidcSettings, OidcVerifier
from todo_kit.testing import channel, running_host

AUDIENCE = "todo-api"


class LocalProvider:
    """An identity provider on 127.0.0.1: discovery, a JWKS it can rotate, an outage switch, a request count."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}  # kid -> private key
        self.published: list[str] = []  # kids in the JWKS
        self.jwks_requests = 0
        self.down = False
        self.delay = 0.0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if provider.delay:
                    time.sleep(provider.delay)
                if provider.down:
                    self.send_error(503)
                    return
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": provider.issuer, "jwks_uri": provider.issuer + "/keys"}
                elif self.path == "/keys":
                    provider.jwks_requests += 1
                    body = {"keys": [provider.public_jwk(kid) for kid in provider.published]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add_key(self, kid: str, kind: str = "RS256", *, publish: bool = True) -> None:
        self.keys[kid] = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if kind.startswith("RS")
            else ec.generate_private_key(ec.SECP256R1())
        )
        if publish:
            self.published.append(kid)

    def public_jwk(self, kid: str) -> dict[str, Any]:
        key = self.keys[kid]
        if isinstance(key, rsa.RSAPrivateKey):
            jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        else:
            jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        return {**jwk, "kid": kid, "use": "sig"}

    def public_pem(self, kid: str) -> bytes:
        public = self.keys[kid].public_key()
        return bytes(public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    def token(self, kid: str, *, algorithm: str | None = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.issuer, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 600, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        key = self.keys[kid]
        chosen = algorithm or ("RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256")
        return jwt.encode(body, key, algorithm=chosen, headers={"kid": kid})

    def settings(self, **changes: Any) -> OidcSettings:
        base = OidcSettings(
            issuer=self.issuer,
            audience=AUDIENCE,
            jwks_url="",
            algorithms=("RS256", "ES256"),
            user_claim="sub",
            refresh_seconds=300.0,
            max_lifetime_seconds=30 * 24 * 3600.0,
        )
        return dataclasses.replace(base, **changes)


@pytest.fixture
def provider() -> Iterator[LocalProvider]:
    local = LocalProvider()
    local.add_key("k1", "RS256")
    local.add_key("e1", "ES256")
    local.thread.start()
    try:
        yield local
    finally:
        local.server.shutdown()
        local.server.server_close()


async def refusal(verifier: OidcVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await verifier.authenticate(f"Bearer {token}")
    return caught.value.message


async def test_tokens_signed_with_rs256_and_es256_by_the_discovered_keys_name_their_user(
    provider: LocalProvider,
) -> None:
    verifier = OidcVerifier(provider.settings())
    assert await verifier.authenticate(f"Bearer {provider.token('k1', sub='alice')}") == "alice"
    assert await verifier.authenticate(f"Bearer {provider.token('e1', sub='bob@example.com')}") == "bob@example.com"
    assert provider.jwks_requests == 1  # discovery once, the keys once, then from memory


async def test_the_user_comes_from_the_configured_claim(provider: LocalProvider) -> None:
    verifier = OidcVerifier(provider.settings(user_claim="email"))
    token = provider.token("k1", sub="0f3a", email="carol@example.com")
    assert await verifier.authenticate(f"Bearer {token}") == "carol@example.com"
    assert "email claim" in await refusal(verifier, provider.token("k1", sub="0f3a"))


async def test_a_wrong_issuer_audience_or_lifetime_is_refused_with_what_is_wrong(provider: LocalProvider) -> None:
    verifier = OidcVerifier(provider.settings())
    now = int(time.time())
    assert "issuer" in await refusal(verifier, provider.token("k1", iss="https://elsewhere.example"))
    assert "audience" in await refusal(verifier, provider.token("k1", aud="another-api"))
    assert "expired" in await refusal(verifier, provider.token("k1", iat=now - 1200, exp=now - 600))
    assert "not valid yet" in await refusal(verifier, provider.token("k1", nbf=now + 600))
    assert "exp" in await refusal(verifier, provider.token("k1", exp=None))
    assert "longer than" in await refusal(verifier, provider.token("k1", exp=now + 40 * 24 * 3600))


@pytest.mark.parametrize("user", ["", "alice smith", "a" * 129, "alice\n", 42])
async def test_a_user_claim_that_is_not_a_user_id_is_refused(provider: LocalProvider, user: Any) -> None:
    verifier = OidcVerifier(provider.settings())
    assert "not a valid user id" in await refusal(verifier, provider.token("k1", sub=user))


async def test_unsigned_tokens_and_hs256_signed_with_the_public_key_are_refused(provider: LocalProvider) -> None:
    verifier = OidcVerifier(provider.settings())
    now = int(time.time())
    claims = {"iss": provider.issuer, "aud": AUDIENCE, "sub": "mallory", "iat": now, "exp": now + 600}
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": "k1"})
    assert "algorithm 'none' is not accepted" in await refusal(verifier, unsigned)
    # The classic confusion: the public key (which anyone can fetch) used as an HMAC secret.
    # (PyJWT itself refuses to use a PEM as an HMAC key, so the token is made by hand.)
    header_and_body = f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': 'k1'}))}.{_b64(json.dumps(claims))}"
    mac = hmac.new(provider.public_pem("k1"), header_and_body.encode(), hashlib.sha256).digest()
    hs256 = f"{header_and_body}.{jwt.utils.base64url_encode(mac).decode()}"
    assert "algorithm 'HS256' is not accepted" in await refusal(verifier, hs256)
    # An ES256 header on an RSA key, and a signature that is not the key's.
    assert "does not match its key" in await refusal(verifier, _with_header(provider.token("k1"), alg="ES256"))
    provider.add_key("stranger", "RS256", publish=False)
    signed_by_stranger = provider.token("stranger")
    assert "signature" in await refusal(verifier, _with_header(signed_by_stranger, kid="k1"))
    assert "not a JWT" in await refusal(verifier, "not.a.token")


async def test_an_algorithm_left_out_of_the_settings_is_refused(provider: LocalProvider) -> None:
    verifier = OidcVerifier(provider.settings(algorithms=("RS256",)))
    assert "'ES256' is not accepted" in await refusal(verifier, provider.token("e1"))


async def test_a_rotated_in_key_is_fetched_at_its_first_token_and_unknown_kids_refetch_at_most_every_30_s(
    provider: LocalProvider,
) -> None:
    verifier = OidcVerifier(provider.settings())
    assert await verifier.authenticate(f"Bearer {provider.token('k1')}") == "alice"
    provider.add_key("k2", "RS256")
    provider.published.remove("k1")  # the provider rotated: k2 in, k1 out
    assert await verifier.authenticate(f"Bearer {provider.token('k2', sub='dave')}") == "dave"
    assert provider.jwks_requests == 2
    for _ in range(5):
        assert "not one of the identity provider's keys" in await refusal(
            verifier, _with_header(provider.token("k2"), kid="junk")
        )
    assert provider.jwks_requests == 2  # junk key ids do not reach the provider again within 30 s


async def test_a_withdrawn_key_stops_working_after_the_scheduled_refresh(provider: LocalProvider) -> None:
    verifier = OidcVerifier(provider.settings(refresh_seconds=0.2))
    old = provider.token("k1")
    assert await verifier.authenticate(f"Bearer {old}") == "alice"
    provider.published.remove("k1")
    await asyncio.sleep(0.3)
    # This call is still answered from the cached keys while the refresh runs behind it.
    fresh = provider.token("k1", sub="alice2")
    await verifier.authenticate(f"Bearer {fresh}")
    deadline = time.monotonic() + 10
    while provider.jwks_requests < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    assert "not one of the identity provider's keys" in await refusal(verifier, old)


async def test_an_outage_keeps_serving_with_the_cached_keys_and_fails_closed_without_any(
    provider: LocalProvider,
) -> None:
    cached = OidcVerifier(provider.settings(refresh_seconds=0.1))
    assert await cached.authenticate(f"Bearer {provider.token('k1')}") == "alice"
    provider.down = True
    await asyncio.sleep(0.2)
    for user in ("erin", "frank"):
        assert await cached.authenticate(f"Bearer {provider.token('e1', sub=user)}") == user
    fresh = OidcVerifier(provider.settings())
    assert "keys are not available" in await refusal(fresh, provider.token("k1"))


async def test_a_slow_provider_never_blocks_the_event_loop(provider: LocalProvider) -> None:
    provider.delay = 1.0
    verifier = OidcVerifier(provider.settings())
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    try:
        assert await verifier.authenticate(f"Bearer {provider.token('k1')}") == "alice"
    finally:
        ticker.cancel()
    # Discovery and keys took two seconds in all; the loop went on ticking meanwhile.
    assert ticks >= 20


def test_oidc_settings_are_checked_when_the_process_starts() -> None:
    good = {
        "TODO_AUTH_MODE": "oidc",
        "TODO_OIDC_ISSUER": "https://login.example.com/realms/todo/",
        "TODO_OIDC_AUDIENCE": "todo-api",
    }
    settings = Settings.from_env(good)
    assert (settings.oidc_issuer, settings.oidc_algorithms) == (
        "https://login.example.com/realms/todo",
        ("RS256", "ES256"),
    )
    distributed = Settings.from_env({**good, "TODO_RUNTIME": "kafka", "TODO_DATABASE_URL": "postgresql:///{database}"})
    assert distributed.jwt_secret == ""  # no shared key needed with a provider
    bad = [
        ({**good, "TODO_OIDC_AUDIENCE": ""}, "TODO_OIDC_AUDIENCE is required"),
        ({**good, "TODO_OIDC_ISSUER": ""}, "TODO_OIDC_ISSUER is required"),
        ({**good, "TODO_OIDC_ISSUER": "http://login.example.com"}, "TODO_OIDC_ISSUER must be an https:// URL"),
        ({**good, "TODO_OIDC_JWKS_URL": "ftp://x/keys"}, "TODO_OIDC_JWKS_URL must be an https:// URL"),
        ({**good, "TODO_OIDC_ALGORITHMS": "RS256,HS256"}, "TODO_OIDC_ALGORITHMS"),
        ({**good, "TODO_OIDC_ALGORITHMS": "none"}, "TODO_OIDC_ALGORITHMS"),
        ({**good, "TODO_OIDC_JWKS_REFRESH_SECONDS": "5"}, "TODO_OIDC_JWKS_REFRESH_SECONDS"),
        ({**good, "TODO_AUTH_MODE": "ldap"}, "TODO_AUTH_MODE"),
    ]
    for env, message in bad:
        with pytest.raises(ConfigError) as caught:
            Settings.from_env(env)
        assert message in str(caught.value), env


async def test_a_host_in_oidc_mode_serves_a_provider_token_and_refuses_a_shared_key_one(
    provider: LocalProvider, kit_settings: Settings
) -> None:
    from task_svc.unit import unit as task_unit

    settings = dataclasses.replace(kit_settings, auth_mode="oidc", oidc_issuer=provider.issuer, oidc_audience=AUDIENCE)
    async with running_host(settings, [task_unit]) as host, channel(host) as chan:
        stub = task_service_pb2_grpc.TaskServiceStub(chan)
        created = await stub.CreateTask(
            task_service_pb2.CreateTaskRequest(task=task_pb2.Task(title="Pay rent")),
            metadata=[("authorization", f"Bearer {provider.token('k1', sub='alice')}")],
        )
        assert created.task.title == "Pay rent"
        listed = await stub.ListTasks(
            task_service_pb2.ListTasksRequest(),
            metadata=[("authorization", f"Bearer {provider.token('e1', sub='alice')}")],
        )
        assert [t.task_id for t in listed.tasks] == [created.task.task_id]
        shared_key = issue_token("a-shared-key-that-is-long-enough-to-sign-with", "alice")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListTasks(
                task_service_pb2.ListTasksRequest(), metadata=[("authorization", f"Bearer {shared_key}")]
            )
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "HS256" in (caught.value.details() or "")


def _b64(text: str) -> str:
    return jwt.utils.base64url_encode(text.encode()).decode()


def _with_header(token: str, **changes: str) -> str:
    """The token with header fields changed (its signature left as it was)."""
    header, body, signature = token.split(".")
    fields = json.loads(jwt.utils.base64url_decode(header))
    return ".".join([_b64(json.dumps({**fields, **changes})), body, signature])
