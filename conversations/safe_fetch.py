"""Fetch caller-supplied URLs without letting callers reach our own network (SSRF).

Every URL from an API caller (reference images, through conversations.references; callback
and webhook URLs) goes through this module:

- only http and https; no user-info, no zone ids, at most a few KB of URL;
- the host is resolved once and refused if ANY address is not public (loopback,
  private, link-local, CGNAT, multicast, reserved, documentation, NAT64, or an
  IPv6 form embedding such an IPv4 address);
- we then connect to exactly the address we checked (the socket is opened on that
  address by us, never by a library that would resolve the name again), so a DNS
  answer that changes between check and connect (DNS rebinding) cannot redirect us.
  The original host name is still sent as ``Host:`` and used for TLS SNI and
  certificate verification, so virtual hosts and HTTPS work normally;
- redirects are followed by hand (at most 3) and every hop is checked again;
- bodies are capped (refused early on Content-Length, and while streaming), and a
  watchdog shuts the socket down when the total time limit expires, which also
  bounds servers that trickle bytes slowly.

Settings (read at call time, all optional):
``NANOCLONE_FETCH_ALLOW_LOOPBACK`` (tests/demo only), ``NANOCLONE_FETCH_MAX_BYTES``,
``NANOCLONE_FETCH_TIMEOUT``, ``NANOCLONE_CALLBACK_ALLOW_HTTP`` (development) and
``NANOCLONE_FETCH_CA_FILE`` (a CA bundle to trust instead of certifi's, e.g. a private CA).
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Resolves (host, port) to IP address strings. Production uses getaddrinfo; tests
# may inject a fake to simulate DNS answers (public names, rebinding).
Resolver = Callable[[str, int], Sequence[str]]

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_TIMEOUT = 15.0
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
MAX_REDIRECTS = 3
MAX_FETCH_URL_LENGTH = 8192  # signed storage URLs can be long
MAX_CALLBACK_URL_LENGTH = 2048
RESPONSE_EXCERPT_BYTES = 1024
USER_AGENT = "NanoClone/1.0 (+safe-fetch)"

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_HOST_NAME = re.compile(r"[a-z0-9_.-]+")
_URL_FORBIDDEN_CHARS = re.compile(r"[\x00-\x20\x7f\\]")

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network
# Checked in order; the first match names the problem. Anything not listed that
# Python still does not consider global is refused by a catch-all, so this table
# only has to be explicit where `is_global` is too lenient (multicast, 6to4,
# NAT64, IPv4-compatible IPv6, 192.0.0.0/24 on older Pythons) or for good messages.
_FORBIDDEN_NETWORKS: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = (
    (_V4("0.0.0.0/8"), "an unspecified ('this network') address"),
    (_V4("127.0.0.0/8"), "a loopback address"),
    (_V4("10.0.0.0/8"), "a private address"),
    (_V4("172.16.0.0/12"), "a private address"),
    (_V4("192.168.0.0/16"), "a private address"),
    (_V4("100.64.0.0/10"), "a shared (carrier-grade NAT) address"),
    (_V4("169.254.0.0/16"), "a link-local address"),
    (_V4("192.0.0.0/24"), "a reserved (IETF protocol) address"),
    (_V4("192.0.2.0/24"), "a documentation address"),
    (_V4("198.51.100.0/24"), "a documentation address"),
    (_V4("203.0.113.0/24"), "a documentation address"),
    (_V4("198.18.0.0/15"), "a benchmarking address"),
    (_V4("192.88.99.0/24"), "a reserved (6to4 relay) address"),
    (_V4("224.0.0.0/4"), "a multicast address"),
    (_V4("255.255.255.255/32"), "the broadcast address"),
    (_V4("240.0.0.0/4"), "a reserved address"),
    (_V6("::/128"), "an unspecified address"),
    (_V6("::1/128"), "a loopback address"),
    # NAT64 gateways translate to IPv4, possibly internal; listed before ::/8, their parent.
    (_V6("64:ff9b::/96"), "a NAT64 address"),
    (_V6("64:ff9b:1::/48"), "a NAT64 address"),
    (_V6("::/8"), "a reserved address"),
    (_V6("100::/64"), "a discard-only address"),
    (_V6("2001:db8::/32"), "a documentation address"),
    (_V6("3fff::/20"), "a documentation address"),
    (_V6("2001:2::/48"), "a benchmarking address"),
    (_V6("fc00::/7"), "a private (unique local) address"),
    (_V6("fe80::/10"), "a link-local address"),
    (_V6("fec0::/10"), "a reserved (site-local) address"),
    (_V6("ff00::/8"), "a multicast address"),
)
_LOOPBACK = "a loopback address"


class UnsafeURLError(ValueError):
    """The URL was refused for safety (scheme, host or address not allowed)."""


class FetchError(ValueError):
    """The URL was allowed but fetching or decoding failed (network, size, format)."""


# --- settings ---------------------------------------------------------------------

_T = TypeVar("_T")


def _setting(name: str, default: _T) -> _T:
    try:
        return getattr(settings, name, default)
    except ImproperlyConfigured:
        # Usable from scripts and the emulator, where Django is not configured.
        return default


def _allow_loopback() -> bool:
    return bool(_setting("NANOCLONE_FETCH_ALLOW_LOOPBACK", False))


def max_bytes() -> int:
    return int(_setting("NANOCLONE_FETCH_MAX_BYTES", DEFAULT_MAX_BYTES))


def _total_timeout() -> float:
    return float(_setting("NANOCLONE_FETCH_TIMEOUT", DEFAULT_TIMEOUT))


def _callback_https_required() -> bool:
    return not _setting("NANOCLONE_CALLBACK_ALLOW_HTTP", False)


def _tls_context() -> ssl.SSLContext:
    return _tls_context_for(_setting("NANOCLONE_FETCH_CA_FILE", None))


@functools.cache
def _tls_context_for(cafile: str | None) -> ssl.SSLContext:
    if cafile is None:
        # certifi, not the OS store: slim containers often ship without CA certs.
        import certifi

        cafile = certifi.where()
    # Default context: CERT_REQUIRED + check_hostname against server_hostname.
    return ssl.create_default_context(cafile=cafile)


# --- address policy ---------------------------------------------------------------


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address routes to (IPv4-compatible, 6to4, Teredo)."""
    found: list[ipaddress.IPv4Address] = []
    if ip in _V6("::/96") and int(ip) > 1:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)  # (server, client)
    return found


def _kind_of_problem(ip: IPAddress, *, allow_loopback: bool) -> str | None:
    """What kind of forbidden address `ip` itself is ("a loopback address"), if any."""
    for network, kind in _FORBIDDEN_NETWORKS:
        if ip.version == network.version and ip in network:
            return None if kind == _LOOPBACK and allow_loopback else kind
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        return "an address with a zone id"
    if not ip.is_global:
        return "not a public address"
    return None


def _address_problem(ip: IPAddress, *, allow_loopback: bool) -> str | None:
    """Why `ip` must not be contacted, as a predicate ("is a loopback address")."""
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped
        if mapped is not None:
            # ::ffff:a.b.c.d *is* a.b.c.d on a dual-stack socket: judge it as such.
            kind = _kind_of_problem(mapped, allow_loopback=allow_loopback)
            return None if kind is None else f"maps to {mapped}, {kind}"
        for inner in _embedded_ipv4(ip):
            kind = _kind_of_problem(inner, allow_loopback=allow_loopback)
            if kind is not None:
                return f"embeds {inner}, {kind}"
    kind = _kind_of_problem(ip, allow_loopback=allow_loopback)
    return None if kind is None else f"is {kind}"


# --- URL validation ---------------------------------------------------------------


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class _Target:
    """One validated hop: where to connect and what to send."""

    url: str
    https: bool
    host: str  # ASCII host name or IP literal: for Host:, SNI and the certificate
    port: int
    request_target: str  # path and query
    addresses: tuple[IPAddress, ...]  # every address checked; we connect only to these

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = 443 if self.https else 80
        return host if self.port == default_port else f"{host}:{self.port}"


def shown(url: str) -> str:
    return url if len(url) <= 200 else url[:200] + "..."


def _resolve_target(
    url: str,
    *,
    action: str,
    max_length: int,
    require_https: bool = False,
    resolver: Resolver | None = None,
    trusted: bool = False,
) -> _Target:
    """Parse, resolve and check one URL; raise UnsafeURLError/FetchError if refused.

    `trusted` is for URLs the operator configured (WEBHOOK_URL), never for caller input:
    any address is allowed, still pinned to the one resolved.
    """
    if not isinstance(url, str):
        raise UnsafeURLError(f"Refusing {action}: the URL must be a string")
    url = url.strip()

    def refuse(reason: str) -> UnsafeURLError:
        return UnsafeURLError(f"Refusing {action} {shown(url)}: {reason}")

    if not url:
        raise UnsafeURLError(f"Refusing {action}: the URL is empty")
    if len(url) > max_length:
        raise refuse(f"the URL is longer than {max_length} characters")
    if _URL_FORBIDDEN_CHARS.search(url):
        # Spaces, control characters and backslashes are parsed differently by
        # different URL parsers; nothing legitimate needs them unescaped.
        raise refuse("the URL contains spaces, control characters or backslashes")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise refuse(f"the URL is malformed ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise refuse(f"only http and https URLs are allowed (got {f'{scheme}:' if scheme else 'no scheme'})")
    if require_https and scheme != "https":
        raise refuse("the URL must use https")
    if "@" in parts.netloc:
        raise refuse("URLs with a user name or password are not allowed")
    raw_host = parts.hostname
    if not raw_host:
        raise refuse("the URL has no host")
    if port == 0:
        raise refuse("port 0 is not allowed")
    port = port or (443 if scheme == "https" else 80)

    literal: IPAddress | None = None
    if "[" in parts.netloc:
        if "%" in raw_host:
            raise refuse("IPv6 zone ids are not allowed")
        try:
            literal = ipaddress.IPv6Address(raw_host)
        except ValueError:
            raise refuse(f"[{raw_host}] is not an IPv6 address") from None
        host = str(literal)
    else:
        try:
            # IDNA also applies NFKC, so e.g. fullwidth digits become ASCII digits
            # here and are then resolved (and checked) like the ASCII spelling.
            host = raw_host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise refuse(f"{raw_host!r} is not a valid host name") from None
        # "example.com." is the same host as "example.com": drop the dot so that
        # "localhost." and "127.0.0.1." meet the same checks as without it.
        host = host.removesuffix(".")
        if not _HOST_NAME.fullmatch(host):
            raise refuse(f"{raw_host!r} is not a valid host name")
        try:
            literal = ipaddress.IPv4Address(host)
        except ValueError:
            literal = None

    allow_loopback = trusted or _allow_loopback()
    if (host == "localhost" or host.endswith(".localhost")) and not allow_loopback:
        # RFC 6761: always loopback, whatever DNS says; refuse without resolving.
        raise refuse(f"{host} is a loopback host name")

    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            # Non-canonical numeric spellings (127.1, 0x7f000001, 2130706433,
            # 0177.0.0.1) are turned into canonical addresses here by libc, so
            # they are checked, and connected to, in canonical form.
            answers = (resolver or _system_resolver)(host, port)
            addresses = [ipaddress.ip_address(answer) for answer in answers]
        except (OSError, UnicodeError) as exc:
            raise FetchError(f"Could not resolve {host} ({exc})") from None
        except ValueError:
            raise refuse(f"{host} resolved to something that is not an IP address") from None
        if not addresses:
            raise FetchError(f"Could not resolve {host}: no addresses")

    for ip in addresses if not trusted else ():
        problem = _address_problem(ip, allow_loopback=allow_loopback)
        if problem is not None:
            if literal is not None and str(ip) == host:
                raise refuse(f"{ip} {problem}")
            raise refuse(f"{host} resolves to {ip}, which {problem}")

    # http.client sends the request target verbatim; percent-encode anything that
    # is not plain ASCII so non-ASCII paths work and cannot break the request line.
    path = urllib.parse.quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    query = urllib.parse.quote(parts.query, safe="/?%:@!$&'()*+,;=-._~")
    return _Target(
        url=url,
        https=scheme == "https",
        host=host,
        port=port,
        request_target=f"{path}?{query}" if query else path,
        addresses=tuple(addresses),
    )


# --- pinned connections -----------------------------------------------------------


class _Deadline:
    """Wall-clock limit for one operation.

    Socket timeouts only bound each single recv; a server trickling one byte at a
    time would never trip them. When this deadline expires, a timer shuts down
    every socket registered here, which unblocks any pending connect/recv.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._expires_at = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._watched: list[socket.socket] = []
        self.fired = False  # set by the timer, once it has shut the sockets down
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    @property
    def expired(self) -> bool:
        # A socket timeout set to the remaining time may fire a moment before the timer.
        return self.fired or time.monotonic() >= self._expires_at - 0.05

    def remaining(self) -> float:
        if self.expired:
            raise self.error()
        return self._expires_at - time.monotonic()

    def error(self) -> FetchError:
        return FetchError(f"Took longer than the {self.seconds:g} s time limit")

    def watch(self, sock: socket.socket) -> None:
        # A duplicate of the descriptor: shutdown() acts on the connection, and
        # the dup stays valid even after ssl wraps (and detaches) the original.
        dup = sock.dup()
        with self._lock:
            self._watched.append(dup)
            if self.fired:
                self._shutdown(dup)

    def _expire(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._watched:
                self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        # OSError: not connected yet, or already closed; nothing left to unblock.
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._watched:
                sock.close()
            self._watched.clear()


def _open_socket(target: _Target, deadline: _Deadline) -> socket.socket:
    last_error: OSError | None = None
    for ip in target.addresses:
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            deadline.watch(sock)
            sock.settimeout(min(CONNECT_TIMEOUT, deadline.remaining()))
            sock.connect((str(ip), target.port))  # the checked address, nothing else
            sock.settimeout(min(READ_TIMEOUT, deadline.remaining()))
            if target.https:
                # SNI and certificate checks use the host name, not the IP.
                return _tls_context().wrap_socket(sock, server_hostname=target.host)
            return sock
        except ssl.SSLError as exc:
            sock.close()
            if deadline.expired:
                raise deadline.error() from None
            raise FetchError(f"TLS failed for {target.host_header}: {exc}") from None
        except OSError as exc:
            sock.close()
            if deadline.expired:
                raise deadline.error() from None
            last_error = exc  # try the next checked address
        except BaseException:
            sock.close()
            raise
    raise FetchError(f"Could not connect to {target.host_header}: {last_error}")


@contextmanager
def _request(
    target: _Target,
    method: str,
    deadline: _Deadline,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Iterator[http.client.HTTPResponse]:
    sock = _open_socket(target, deadline)
    # A plain HTTPConnection over our own (possibly TLS-wrapped) socket: with
    # `sock` set it never connects or resolves anything itself.
    conn = http.client.HTTPConnection(target.host, target.port)
    conn.sock = sock
    sent_headers = {
        "User-Agent": USER_AGENT,
        "Accept-Encoding": "identity",  # count the bytes we really get: no gzip bombs
        "Connection": "close",
        **{k: v for k, v in (headers or {}).items() if k.lower() not in ("host", "content-length")},
        "Host": target.host_header,
    }
    try:
        conn.request(method, target.request_target, body=body, headers=sent_headers)
        yield conn.getresponse()
    except (OSError, http.client.HTTPException) as exc:
        if deadline.expired:
            raise deadline.error() from None
        raise FetchError(f"Request to {target.host_header} failed: {exc}") from None
    finally:
        conn.close()


def _read_capped(response: http.client.HTTPResponse, limit: int, url: str, deadline: _Deadline) -> bytes:
    too_large = FetchError(f"{shown(url)} is larger than the {limit / (1024 * 1024):g} MB limit")
    header = (response.getheader("Content-Length") or "").strip()
    declared = int(header) if header.isdigit() else None
    if declared is not None and declared > limit:
        raise too_large
    chunks: list[bytes] = []
    total = 0
    while chunk := response.read1(64 * 1024):
        total += len(chunk)
        if total > limit:
            raise too_large
        chunks.append(chunk)
    # read1() reports a connection closed early (or shut down by the deadline
    # watchdog) as a plain end of body: tell those apart from a complete body.
    if deadline.fired:
        raise deadline.error()
    if declared is not None and total != declared:
        raise FetchError(f"{shown(url)}: the connection closed after {total} of {declared} bytes")
    return b"".join(chunks)


def fetch_bytes(url: str, *, resolver: Resolver | None = None) -> bytes:
    """The body of a caller-supplied http(s) URL, fetched safely (see above); conversations.references
    checks that it is an image. `resolver` exists for tests; production leaves it None (getaddrinfo).

    Raises UnsafeURLError (refused) or FetchError (failed); both are ValueErrors with messages meant
    for the API caller.
    """
    limit = max_bytes()
    original_url = url
    deadline = _Deadline(_total_timeout())
    try:
        for _hop in range(MAX_REDIRECTS + 1):
            target = _resolve_target(url, action="to fetch", max_length=MAX_FETCH_URL_LENGTH, resolver=resolver)
            headers = {"Accept": "image/jpeg, image/png, image/webp, */*;q=0.5"}
            with _request(target, "GET", deadline, headers=headers) as response:
                if response.status in _REDIRECT_STATUSES:
                    location = response.getheader("Location")
                    if not location:
                        raise FetchError(f"{shown(url)} redirected without a Location")
                    url = urllib.parse.urljoin(target.url, location.strip())
                    continue  # the next hop is validated from scratch
                if response.status != 200:
                    raise FetchError(f"{shown(url)} answered HTTP {response.status} {response.reason}")
                encoding = (response.getheader("Content-Encoding") or "identity").strip().lower()
                if encoding != "identity":
                    raise FetchError(f"{shown(url)} sent a {encoding}-compressed body")
                return _read_capped(response, limit, url, deadline)
        raise FetchError(f"Too many redirects (more than {MAX_REDIRECTS}) fetching {shown(original_url)}")
    finally:
        deadline.close()


# --- public API -------------------------------------------------------------------


def check_callback_url(
    url: str, *, require_https: bool | None = None, resolver: Resolver | None = None, trusted: bool = False
) -> str:
    """Validate a callback/webhook URL without contacting it; return it stripped.

    `require_https=None` follows the settings (https unless
    NANOCLONE_CALLBACK_ALLOW_HTTP). The URL is checked again when posting to it,
    since DNS may have changed in between.
    """
    if require_https is None:
        require_https = _callback_https_required() and not trusted
    target = _resolve_target(
        url,
        action="callback URL",
        max_length=MAX_CALLBACK_URL_LENGTH,
        require_https=require_https,
        resolver=resolver,
        trusted=trusted,
    )
    return target.url


def post_json(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float,
    *,
    resolver: Resolver | None = None,
    trusted: bool = False,
) -> tuple[int, str]:
    """POST `body` to a callback URL over a pinned, checked address.

    Redirects are not followed (the status is returned). Returns the status code
    and the first bytes of the response as text; raises UnsafeURLError or FetchError.
    """
    target = _resolve_target(
        url,
        action="callback URL",
        max_length=MAX_CALLBACK_URL_LENGTH,
        require_https=_callback_https_required() and not trusted,
        resolver=resolver,
        trusted=trusted,
    )
    sent_headers = {"Content-Type": "application/json", **headers}
    deadline = _Deadline(timeout)
    try:
        with _request(target, "POST", deadline, body=body, headers=sent_headers) as response:
            excerpt = b""
            while len(excerpt) < RESPONSE_EXCERPT_BYTES and (chunk := response.read1(RESPONSE_EXCERPT_BYTES)):
                excerpt += chunk
            return response.status, excerpt[:RESPONSE_EXCERPT_BYTES].decode("utf-8", errors="replace")
    finally:
        deadline.close()
