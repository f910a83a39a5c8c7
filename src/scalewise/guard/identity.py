"""Who is calling: the key that rate limits and caches are kept per.

Sources, first match wins:

1. an API-key header (``x-api-key``), stored only as a SHA-256 digest, never raw. Without
   ``api_keys`` any value is taken as given, so a client could rotate made-up keys to get
   fresh buckets: pass ``api_keys`` (a lookup returning the key's tier, ``True``, or ``None``
   for unknown keys), or put the limiter behind the layer that checks keys. An unknown key
   is treated like a bad token (fall back, or ``invalid`` under ``invalid_token="reject"``);
2. a *verified* JWT from ``Authorization: Bearer …`` (signature, ``exp``, audience and issuer
   checked by PyJWT with the configured key and algorithms). An unverified, expired or
   malformed token is never an identity: it falls through to the next source, or, with
   ``invalid_token="reject"``, yields an ``invalid`` identity the middleware answers with 401;
3. the authenticated user an earlier middleware put in ``scope["user"]`` (``REMOTE_USER``
   under WSGI);
4. the client IP. ``X-Forwarded-For`` is honoured only when the direct peer is one of the
   trusted proxies, and then read from the right, skipping trusted hops, because every hop
   left of the first untrusted one could have been written by the client. IPv6 clients are
   grouped by ``/64`` (one subscriber's usual allocation) so rotating addresses does not help.

Header values are capped in length before any work, so a huge header costs nothing.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import jwt

from scalewise.errors import ConfigError

MAX_TOKEN_BYTES: Final = 8192
MAX_KEY_BYTES: Final = 4096
MAX_FORWARDED_HOPS: Final = 32
PEER_CACHE: Final = 4096
_SOURCE: Final = "IdentityResolver"
_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Identity:
    """A caller. ``key`` is safe to log and to use in cache or Redis keys (no secrets).

    ``kind`` is one of ``api_key``, ``jwt``, ``user``, ``ip``, ``anonymous`` or ``invalid``.
    """

    key: str
    kind: str
    tier: str | None = None


class IdentityResolver:
    """Resolve an :class:`Identity` from an ASGI scope or a WSGI environ.

    Example:
        >>> resolver = IdentityResolver(trusted_proxies=["10.0.0.0/8"])
        >>> resolver.resolve({"type": "http", "headers": [], "client": ("203.0.113.9", 5000)})
        Identity(key='ip:203.0.113.9', kind='ip', tier=None)
    """

    def __init__(
        self,
        *,
        api_key_header: str | None = "x-api-key",
        jwt_key: str | None = None,
        jwt_algorithms: Sequence[str] = ("HS256",),
        jwt_claim: str = "sub",
        jwt_audience: str | Sequence[str] | None = None,
        jwt_issuer: str | None = None,
        jwt_leeway: float = 0.0,
        tier_claim: str | None = "tier",
        trusted_proxies: Sequence[str] = (),
        invalid_token: Literal["fallback", "reject"] = "fallback",
        ipv6_prefix: int = 64,
        api_keys: Callable[[str], str | bool | None] | None = None,
    ) -> None:
        if api_key_header is not None and not (isinstance(api_key_header, str) and api_key_header):
            raise ConfigError(_SOURCE, "api_key_header", "a header name or None", api_key_header)
        if jwt_key is not None and (not isinstance(jwt_key, str | bytes) or not jwt_key):
            raise ConfigError(_SOURCE, "jwt_key", "a non-empty secret or public key", "<hidden>")
        algorithms = _check_algorithms(jwt_algorithms)
        if not isinstance(jwt_claim, str) or not jwt_claim:
            raise ConfigError(_SOURCE, "jwt_claim", "a claim name such as 'sub'", jwt_claim)
        if invalid_token not in ("fallback", "reject"):
            raise ConfigError(_SOURCE, "invalid_token", "'fallback' or 'reject'", invalid_token)
        if (
            isinstance(ipv6_prefix, bool)
            or not isinstance(ipv6_prefix, int)
            or not (1 <= ipv6_prefix <= 128)
        ):
            raise ConfigError(_SOURCE, "ipv6_prefix", "a prefix length from 1 to 128", ipv6_prefix)
        self.api_key_header = api_key_header.lower() if api_key_header else None
        self._asgi_api_key = self.api_key_header.encode("latin-1") if self.api_key_header else None
        self._wanted = frozenset(
            {
                b"authorization",
                b"x-forwarded-for",
                *([self._asgi_api_key] if self._asgi_api_key else []),
            }
        )
        self._wsgi_api_key = (
            "HTTP_" + api_key_header.upper().replace("-", "_") if api_key_header else None
        )
        self.jwt_key = jwt_key
        self.jwt_algorithms = algorithms
        self.jwt_claim = jwt_claim
        self.jwt_audience = jwt_audience
        self.jwt_issuer = jwt_issuer
        self.jwt_leeway = jwt_leeway
        self.tier_claim = tier_claim
        self.invalid_token = invalid_token
        self.ipv6_prefix = ipv6_prefix
        self.api_keys = api_keys
        self.trusted_proxies = _parse_networks(trusted_proxies)
        self._peers: dict[str, tuple[str, _IPAddress | None]] = {}

    # -- entry points ----------------------------------------------------------------------

    def resolve(self, scope: Mapping[str, Any]) -> Identity:
        """Identity for an ASGI ``http``/``websocket`` scope."""
        wanted = self._wanted
        found: dict[bytes, bytes] = {}
        for name, value in scope.get("headers") or ():
            if name in wanted and name not in found:
                found[name] = value
        client = scope.get("client")
        peer = client[0] if client else None
        get = found.get
        api_key = get(self._asgi_api_key) if self._asgi_api_key else None
        return self._resolve(
            api_key=api_key,
            authorization=get(b"authorization"),
            user=_scope_user(scope),
            peer=peer,
            forwarded=get(b"x-forwarded-for"),
        )

    def resolve_environ(self, environ: Mapping[str, Any]) -> Identity:
        """Identity for a WSGI environ (``REMOTE_USER`` is the authenticated user)."""
        user = environ.get("REMOTE_USER") or None
        return self._resolve(
            api_key=_latin1(environ.get(self._wsgi_api_key)) if self._wsgi_api_key else None,
            authorization=_latin1(environ.get("HTTP_AUTHORIZATION")),
            user=(str(user), None) if user else None,
            peer=environ.get("REMOTE_ADDR"),
            forwarded=_latin1(environ.get("HTTP_X_FORWARDED_FOR")),
        )

    # -- the shared decision ---------------------------------------------------------------

    def _resolve(
        self,
        *,
        api_key: bytes | None,
        authorization: bytes | None,
        user: tuple[str, str | None] | None,
        peer: str | None,
        forwarded: bytes | None,
    ) -> Identity:
        invalid = False
        if api_key and len(api_key) <= MAX_KEY_BYTES:
            known = self.api_keys(api_key.decode("latin-1")) if self.api_keys else True
            if known:
                digest = hashlib.sha256(api_key).hexdigest()[:32]
                return Identity(
                    "key:" + digest, "api_key", known if isinstance(known, str) else None
                )
            invalid = True
        if self.jwt_key is not None and authorization:
            claims = self._verified_claims(authorization)
            if claims is not None:
                return self._from_claims(claims)
            invalid = invalid or _looks_like_bearer(authorization)
        ip = self._client_ip(peer, forwarded)
        if invalid and self.invalid_token == "reject":
            return Identity("invalid:" + (ip or "unknown"), "invalid")
        if user is not None:
            return Identity("user:" + _escape(user[0]), "user", user[1])
        if ip is None:
            return Identity("anonymous", "anonymous")
        return Identity("ip:" + ip, "ip")

    def _verified_claims(self, authorization: bytes) -> dict[str, Any] | None:
        if len(authorization) > MAX_TOKEN_BYTES or not _looks_like_bearer(authorization):
            return None
        token = authorization[7:].strip()
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.jwt_key,  # type: ignore[arg-type]
                algorithms=self.jwt_algorithms,
                audience=self.jwt_audience,
                issuer=self.jwt_issuer,
                leeway=self.jwt_leeway,
                options={"require": ["exp", self.jwt_claim]},
            )
        except (jwt.PyJWTError, ValueError, TypeError):
            return None  # bad signature, expired, wrong audience, garbage: never an identity
        return claims

    def _from_claims(self, claims: Mapping[str, Any]) -> Identity:
        subject = claims.get(self.jwt_claim)
        tier = claims.get(self.tier_claim) if self.tier_claim else None
        return Identity(
            "jwt:" + _escape(str(subject)),
            "jwt",
            tier if isinstance(tier, str) and tier else None,
        )

    def _client_ip(self, peer: str | None, forwarded: bytes | None) -> str | None:
        if not peer:
            return None
        cached = self._peers.get(peer)
        if cached is None:  # parsing an address costs microseconds; peers repeat
            cached = self._peer_info(peer)
            if len(self._peers) >= PEER_CACHE:
                self._peers.clear()  # bounded; a flood of addresses only costs re-parsing
            self._peers[peer] = cached
        label, address = cached
        if forwarded and address is not None:
            hops = forwarded[: MAX_FORWARDED_HOPS * 64].split(b",")[-MAX_FORWARDED_HOPS:]
            for raw in reversed(hops):
                hop = _parse_ip(raw.strip().decode("latin-1"))
                if hop is None:
                    break  # garbage from a trusted proxy: the last good hop is all we know
                address = hop
                if not self._trusted(hop):
                    break
            return self._label(address)
        return label

    def _peer_info(self, peer: str) -> tuple[str, _IPAddress | None]:
        """The peer's label, and its address when it is a trusted proxy."""
        address = _parse_ip(peer)
        if address is None:
            return _escape(peer), None
        return self._label(address), address if self._trusted(address) else None

    def _trusted(self, address: _IPAddress) -> bool:
        return any(address in network for network in self.trusted_proxies)

    def _label(self, address: _IPAddress) -> str:
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                return str(address.ipv4_mapped)
            network = ipaddress.IPv6Network((address, self.ipv6_prefix), strict=False)
            return str(network) if self.ipv6_prefix < 128 else str(address)
        return str(address)


# -- helpers -------------------------------------------------------------------------------


def _check_algorithms(values: Sequence[str]) -> tuple[str, ...]:
    if isinstance(values, str) or not values:
        raise ConfigError(_SOURCE, "jwt_algorithms", "a non-empty list such as ['HS256']", values)
    known = jwt.algorithms.get_default_algorithms()
    for index, name in enumerate(values):
        if name not in known or name == "none":
            expected = "a signing algorithm PyJWT supports (not 'none')"
            raise ConfigError(_SOURCE, f"jwt_algorithms[{index}]", expected, name)
    return tuple(values)


def _parse_networks(values: Iterable[str]) -> tuple[_IPNetwork, ...]:
    if isinstance(values, str):
        raise ConfigError(_SOURCE, "trusted_proxies", "a list of CIDRs", values)
    out: list[_IPNetwork] = []
    for index, value in enumerate(values):
        try:
            out.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError:
            expected = "an address or CIDR such as '10.0.0.0/8'"
            raise ConfigError(_SOURCE, f"trusted_proxies[{index}]", expected, value) from None
    return tuple(out)


def _parse_ip(value: str | None) -> _IPAddress | None:
    if not value or len(value) > 64:
        return None
    try:
        return ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return None


def _looks_like_bearer(value: bytes) -> bool:
    return value[:7].lower() == b"bearer "


def _latin1(value: object) -> bytes | None:
    if isinstance(value, str) and value:
        return value.encode("latin-1", "replace")
    return None


def _scope_user(scope: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """Starlette's ``AuthenticationMiddleware`` convention: ``scope["user"]`` with
    ``is_authenticated`` and ``identity``/``display_name``; a plain string also works."""
    user = scope.get("user")
    if user is None:
        return None
    if isinstance(user, str):
        return (user, None) if user else None
    if not getattr(user, "is_authenticated", False):
        return None
    name = getattr(user, "identity", None) or getattr(user, "display_name", None)
    if not name:
        return None
    tier = getattr(user, "tier", None)
    return str(name), tier if isinstance(tier, str) and tier else None


def _escape(value: str, limit: int = 128) -> str:
    """Printable and short: odd characters are percent-escaped, long values hashed."""
    if len(value) > limit:
        return "h:" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:32]
    if value.isascii() and value.isprintable() and "%" not in value and " " not in value:
        return value
    return "".join(
        c if c.isascii() and c.isprintable() and c not in "% " else _pct(c) for c in value
    )


def _pct(char: str) -> str:
    return "".join(f"%{b:02X}" for b in char.encode("utf-8", "replace"))
