"""Identity resolution: API keys, verified JWTs only, users, client IPs and trusted proxies."""

from __future__ import annotations

import hashlib
import time
from types import SimpleNamespace
from typing import Any

import jwt
import pytest

from scalewise.errors import ConfigError
from scalewise.guard.identity import MAX_TOKEN_BYTES, Identity, IdentityResolver

SECRET = "a-test-secret-that-is-at-least-32-bytes-long"
OTHER = "another-secret-that-is-also-32-bytes-or-more"


def scope(
    headers: dict[str, str] | None = None, client: str | None = "203.0.113.7", **extra: Any
) -> dict[str, Any]:
    raw = [(k.lower().encode(), v.encode("latin-1")) for k, v in (headers or {}).items()]
    return {"type": "http", "headers": raw, "client": (client, 1234) if client else None, **extra}


def token(key: str = SECRET, **claims: Any) -> str:
    body = {"sub": "alice", "exp": time.time() + 300, **claims}
    return jwt.encode(body, key, algorithm="HS256")


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


def test_ip_by_default() -> None:
    assert IdentityResolver().resolve(scope()) == Identity("ip:203.0.113.7", "ip")
    assert IdentityResolver().resolve(scope(client=None)) == Identity("anonymous", "anonymous")


def test_api_key_is_hashed_never_stored_raw() -> None:
    identity = IdentityResolver().resolve(scope({"x-api-key": "sk_live_secret"}))
    assert identity.kind == "api_key"
    assert "sk_live_secret" not in identity.key
    assert identity.key == "key:" + hashlib.sha256(b"sk_live_secret").hexdigest()[:32]
    other = IdentityResolver(api_key_header="x-token").resolve(scope({"x-token": "abc"}))
    assert other.kind == "api_key"
    assert IdentityResolver(api_key_header=None).resolve(scope({"x-api-key": "a"})).kind == "ip"


def test_api_keys_lookup_rejects_made_up_keys() -> None:
    known = {"sk_pro": "pro", "sk_plain": True}.get
    resolver = IdentityResolver(api_keys=known)
    assert resolver.resolve(scope({"x-api-key": "sk_pro"})).tier == "pro"
    assert resolver.resolve(scope({"x-api-key": "sk_plain"})).kind == "api_key"
    assert resolver.resolve(scope({"x-api-key": "made-up"})) == Identity("ip:203.0.113.7", "ip")
    strict = IdentityResolver(api_keys=known, invalid_token="reject")
    assert strict.resolve(scope({"x-api-key": "made-up"})).kind == "invalid"


def test_verified_jwt_gives_subject_and_tier() -> None:
    resolver = IdentityResolver(jwt_key=SECRET)
    assert resolver.resolve(scope(bearer(token(tier="pro")))) == Identity("jwt:alice", "jwt", "pro")
    assert resolver.resolve(scope(bearer(token()))).tier is None
    custom = IdentityResolver(jwt_key=SECRET, jwt_claim="uid", tier_claim="plan")
    assert custom.resolve(scope(bearer(token(uid=42, plan="free")))) == Identity(
        "jwt:42", "jwt", "free"
    )


@pytest.mark.parametrize(
    "value",
    [
        token(key=OTHER),  # wrong signature
        token(exp=time.time() - 10),  # expired
        jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256"),  # no exp
        jwt.encode({"exp": time.time() + 60}, SECRET),  # no sub
        jwt.encode({"sub": "alice", "exp": time.time() + 60}, None, algorithm="none"),  # type: ignore[arg-type]
        "not.a.jwt",
        "garbage",
        "x" * (MAX_TOKEN_BYTES + 10),
        token(aud="other-service"),  # wrong audience
        token(),  # no audience while one is required
    ],
)
def test_an_unverified_token_is_never_an_identity(value: str) -> None:
    fallback = IdentityResolver(jwt_key=SECRET, jwt_audience="api", jwt_issuer=None)
    assert fallback.resolve(scope(bearer(value))) == Identity("ip:203.0.113.7", "ip")
    reject = IdentityResolver(jwt_key=SECRET, jwt_audience="api", invalid_token="reject")
    assert reject.resolve(scope(bearer(value))).kind == "invalid"


def test_audience_and_issuer_are_checked() -> None:
    resolver = IdentityResolver(jwt_key=SECRET, jwt_audience="api", jwt_issuer="https://idp")
    good = token(aud="api", iss="https://idp")
    assert resolver.resolve(scope(bearer(good))).kind == "jwt"
    assert resolver.resolve(scope(bearer(token(aud="api", iss="https://evil")))).kind == "ip"


def test_jwt_ignored_when_not_configured_and_basic_auth_is_not_a_bad_token() -> None:
    assert IdentityResolver().resolve(scope(bearer(token()))).kind == "ip"
    reject = IdentityResolver(jwt_key=SECRET, invalid_token="reject")
    assert reject.resolve(scope({"authorization": "Basic YTpi"})).kind == "ip"


def test_scope_user() -> None:
    user = SimpleNamespace(is_authenticated=True, identity="bob", tier="pro")
    assert IdentityResolver().resolve(scope(user=user)) == Identity("user:bob", "user", "pro")
    anonymous = SimpleNamespace(is_authenticated=False, display_name="")
    assert IdentityResolver().resolve(scope(user=anonymous)).kind == "ip"
    assert IdentityResolver().resolve(scope(user="carol")) == Identity("user:carol", "user")


def test_odd_characters_are_escaped_and_long_values_hashed() -> None:
    resolver = IdentityResolver()
    odd = resolver.resolve(scope(user="名前 with space%\n\x00"))
    assert odd.key == "user:%E5%90%8D%E5%89%8D%20with%20space%25%0A%00"
    assert resolver.resolve(scope(user="a" * 10_000)).key.startswith("user:h:")
    assert len(resolver.resolve(scope(user="a" * 10_000)).key) < 50


def test_forwarded_for_only_from_trusted_proxies() -> None:
    xff = {"x-forwarded-for": "198.51.100.1, 10.0.0.5"}
    untrusted = IdentityResolver()
    assert untrusted.resolve(scope(xff, client="10.0.0.9")).key == "ip:10.0.0.9"
    trusted = IdentityResolver(trusted_proxies=["10.0.0.0/8"])
    # rightmost untrusted hop wins; the client cannot spoof by prepending
    assert trusted.resolve(scope(xff, client="10.0.0.9")).key == "ip:198.51.100.1"
    spoof = {"x-forwarded-for": "1.1.1.1, 198.51.100.1"}
    assert trusted.resolve(scope(spoof, client="10.0.0.9")).key == "ip:198.51.100.1"
    # a direct client that is not a proxy cannot set it at all
    assert trusted.resolve(scope(xff, client="192.0.2.3")).key == "ip:192.0.2.3"
    # garbage from a trusted proxy: keep the last address we can vouch for
    junk = {"x-forwarded-for": "<script>, 10.0.0.5"}
    assert trusted.resolve(scope(junk, client="10.0.0.9")).key == "ip:10.0.0.5"


def test_huge_forwarded_header_is_cheap_and_bounded() -> None:
    trusted = IdentityResolver(trusted_proxies=["10.0.0.0/8"])
    huge = {"x-forwarded-for": ", ".join(["10.1.1.1"] * 100_000)}
    assert trusted.resolve(scope(huge, client="10.0.0.9")).key.startswith("ip:10.")


def test_ipv6_grouped_by_prefix_and_mapped_v4_unwrapped() -> None:
    resolver = IdentityResolver()
    a = resolver.resolve(scope(client="2001:db8:1:2::1")).key
    b = resolver.resolve(scope(client="2001:db8:1:2:ffff::9")).key
    assert a == b == "ip:2001:db8:1:2::/64"
    assert resolver.resolve(scope(client="::ffff:192.0.2.1")).key == "ip:192.0.2.1"
    exact = IdentityResolver(ipv6_prefix=128)
    assert exact.resolve(scope(client="2001:db8::1")).key == "ip:2001:db8::1"


def test_wsgi_environ() -> None:
    resolver = IdentityResolver(jwt_key=SECRET, trusted_proxies=["127.0.0.1/32"])
    environ = {
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_X_FORWARDED_FOR": "198.51.100.4",
        "HTTP_AUTHORIZATION": f"Bearer {token(tier='free')}",
    }
    assert resolver.resolve_environ(environ) == Identity("jwt:alice", "jwt", "free")
    del environ["HTTP_AUTHORIZATION"]
    assert resolver.resolve_environ(environ).key == "ip:198.51.100.4"
    assert resolver.resolve_environ({**environ, "REMOTE_USER": "dana"}).key == "user:dana"
    keyed = resolver.resolve_environ({**environ, "HTTP_X_API_KEY": "k1"})
    assert keyed.kind == "api_key"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"trusted_proxies": ["10.0.0.0/33"]}, "trusted_proxies[0]"),
        ({"trusted_proxies": "10.0.0.0/8"}, "trusted_proxies"),
        ({"jwt_algorithms": ["none"]}, "jwt_algorithms[0]"),
        ({"jwt_algorithms": []}, "jwt_algorithms"),
        ({"jwt_claim": ""}, "jwt_claim"),
        ({"invalid_token": "maybe"}, "invalid_token"),
        ({"ipv6_prefix": 0}, "ipv6_prefix"),
        ({"api_key_header": ""}, "api_key_header"),
        ({"jwt_key": ""}, "jwt_key"),
    ],
)
def test_bad_config_names_the_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        IdentityResolver(**options)
    assert info.value.path == field


def test_peer_cache_is_bounded() -> None:
    from scalewise.guard.identity import PEER_CACHE

    resolver = IdentityResolver()
    for i in range(PEER_CACHE * 2 + 5):
        key = resolver.resolve(scope(client=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")).key
        assert key == f"ip:10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
    assert len(resolver._peers) <= PEER_CACHE
