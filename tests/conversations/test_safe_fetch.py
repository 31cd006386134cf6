"""Safe fetching of caller-supplied URLs (SSRF), against a real server on loopback."""

from __future__ import annotations

import base64
import datetime
import io
import ipaddress
import json
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from PIL import Image

from conversations.references import decode_data_uri, fetch_image, verify
from conversations.safe_fetch import FetchError, UnsafeURLError, check_callback_url, post_json
from gallery.storage import ImageInfo


def _image(fmt: str, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(buffer, format=fmt)
    return buffer.getvalue()


PNG = _image("PNG", (8, 6))
JPEG = _image("JPEG", (10, 7))
WEBP = _image("WEBP", (12, 9))
GIF = _image("GIF", (5, 5))
HTML = b"<!doctype html><title>not an image</title>"


class LoopbackServer:
    """A real HTTP(S) server on 127.0.0.1 that records every request it receives."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.hits: list[str] = []
        self.host_headers: list[str] = []
        self.bodies: list[bytes] = []
        self.post_headers: list[dict[str, str]] = []
        self.on_request: Callable[[str], None] | None = None
        self.stop = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

            def _record(self) -> None:
                server.hits.append(self.path)
                server.host_headers.append(self.headers.get("Host", ""))
                if server.on_request is not None:
                    server.on_request(self.path)

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def _redirect(self, status: int, location: str) -> None:
                self._send(status, b"", {"Location": location})

            def do_POST(self) -> None:
                self._record()
                server.bodies.append(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                server.post_headers.append(dict(self.headers.items()))
                if self.path == "/post-redirect":
                    self._redirect(302, "/echo")
                elif self.path == "/long-answer":
                    self._send(200, b"x" * 100_000)
                else:
                    self._send(202, json.dumps({"received": len(server.bodies[-1])}).encode())

            def do_GET(self) -> None:
                self._record()
                path, _, query = self.path.partition("?")
                params = dict(urllib.parse.parse_qsl(query))
                static = {
                    "/img.png": (PNG, "image/png"),
                    "/img.jpg": (JPEG, "image/jpeg"),
                    "/img.webp": (WEBP, "image/webp"),
                    "/img.gif": (GIF, "image/gif"),
                    "/page.html": (HTML, "text/html"),
                    # Claims to be a PNG, and starts like one.
                    "/truncated.png": (PNG[: len(PNG) // 2], "image/png"),
                }
                try:
                    if path in static:
                        body, mime = static[path]
                        self._send(200, body, {"Content-Type": mime})
                    elif path.startswith("/redirect/"):
                        left = int(path.rsplit("/", 1)[1])
                        self._redirect(302, f"/redirect/{left - 1}" if left > 1 else "/img.png")
                    elif path == "/redirect-to":
                        self._redirect(int(params["code"]), params["location"])
                    elif path == "/missing.png":
                        self._send(404, b"not found")
                    elif path == "/short-body":
                        self.send_response(200)
                        self.send_header("Content-Length", str(len(PNG) + 100))
                        self.send_header("Connection", "close")
                        self.end_headers()
                        self.wfile.write(PNG)
                    elif path == "/huge-declared":
                        self.send_response(200)
                        self.send_header("Content-Length", str(10**9))
                        self.end_headers()
                        self.wfile.write(PNG)
                    elif path == "/huge-chunked":
                        self.send_response(200)
                        self.send_header("Transfer-Encoding", "chunked")
                        self.end_headers()
                        for _ in range(256):
                            self.wfile.write(b"1000\r\n" + b"\0" * 4096 + b"\r\n")
                        self.wfile.write(b"0\r\n\r\n")
                    elif path == "/slow":
                        self.send_response(200)
                        self.send_header("Content-Length", "1000")
                        self.end_headers()
                        for _ in range(1000):
                            self.wfile.write(b"x")
                            self.wfile.flush()
                            if server.stop.wait(0.05):
                                return
                    elif path == "/hang":
                        server.stop.wait(30)
                    else:
                        self._send(404, b"no such path")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client hung up on purpose (size or time limit)

        return Handler


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    srv = LoopbackServer()
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def strict_defaults(settings: Any) -> None:
    # Explicit, whatever the project's test settings choose.
    settings.NANOCLONE_FETCH_ALLOW_LOOPBACK = False
    settings.NANOCLONE_CALLBACK_ALLOW_HTTP = False
    settings.NANOCLONE_FETCH_MAX_BYTES = 10 * 1024 * 1024
    settings.NANOCLONE_FETCH_TIMEOUT = 15.0


@pytest.fixture
def loopback_allowed(settings: Any) -> None:
    settings.NANOCLONE_FETCH_ALLOW_LOOPBACK = True


def fake_dns(table: dict[str, list[str]]) -> Callable[[str, int], list[str]]:
    """A resolver answering from `table` (production uses getaddrinfo)."""

    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


# --- refused before any request ------------------------------------------------------

# {port} is the loopback server's port: if any of these got through, the server would
# see the request.
FORBIDDEN_URLS = [
    "http://127.0.0.1:{port}/img.png",
    "http://127.1:{port}/img.png",
    "http://0x7f000001:{port}/img.png",
    "http://2130706433:{port}/img.png",
    "http://017700000001:{port}/img.png",
    "http://0177.0.0.1:{port}/img.png",
    "http://0177.0.0.01:{port}/img.png",
    "http://127.000.000.001:{port}/img.png",
    "http://[::1]:{port}/img.png",
    "http://[::ffff:127.0.0.1]:{port}/img.png",
    "http://[::ffff:7f00:1]:{port}/img.png",
    "http://[0:0:0:0:0:ffff:7f00:1]:{port}/img.png",
    "http://[::127.0.0.1]:{port}/img.png",  # IPv4-compatible
    "http://[2002:7f00:1::]:{port}/img.png",  # 6to4 around 127.0.0.1
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/img.png",  # Teredo, client 127.0.0.1
    "http://[64:ff9b::7f00:1]/img.png",  # NAT64
    "http://[64:ff9b::808:808]/img.png",  # NAT64, even towards a public address
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/img.png",
    "http://172.16.0.1/img.png",
    "http://192.168.1.1/img.png",
    "http://100.64.0.1/img.png",
    "http://192.0.0.8/img.png",
    "http://192.0.2.1/img.png",  # documentation
    "http://198.18.0.1/img.png",  # benchmarking
    "http://240.0.0.1/img.png",
    "http://0.0.0.0:{port}/img.png",
    "http://0:{port}/img.png",
    "http://[::]:{port}/img.png",
    "http://localhost:{port}/img.png",
    "http://LOCALHOST:{port}/img.png",
    "http://localhost.:{port}/img.png",
    "http://127.0.0.1.:{port}/img.png",
    "http://images.localhost:{port}/img.png",
    "http://224.0.0.1/img.png",
    "http://255.255.255.255/img.png",
    "http://[fe80::1]/img.png",
    "http://[fe80::1%25lo]:{port}/img.png",
    "http://[fc00::1]/img.png",
    "http://[fd12:3456::1]/img.png",
    "http://[ff02::1]/img.png",
    "http://[2001:db8::1]/img.png",
    "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11:{port}/img.png",  # fullwidth digits
    "http://%31%32%37.0.0.1:{port}/img.png",
    "http://evil@127.0.0.1:{port}/img.png",
    "http://user:pass@example.com@127.0.0.1:{port}/img.png",
    "http://127.0.0.1:{port}\\@example.com/img.png",
    "http://127.0.0.1:{port}/img png",
    "file:///etc/passwd",
    "ftp://127.0.0.1:{port}/img.png",
    "gopher://127.0.0.1:{port}/_GET",
    "data:image/png;base64," + base64.b64encode(PNG).decode(),
    "javascript:alert(1)",
    "//127.0.0.1:{port}/img.png",
    "http:///img.png",
    "http://[::1/img.png",
]


def _fetch(url: str) -> object:
    return fetch_image(url)


def _post(url: str) -> object:
    return post_json(url, b"{}", {}, 5.0)


def _check(url: str) -> object:
    return check_callback_url(url, require_https=False)


@pytest.mark.parametrize("door", [_fetch, _post, _check], ids=["fetch_image", "post_json", "callback"])
@pytest.mark.parametrize("template", FORBIDDEN_URLS)
def test_it_refuses_forbidden_urls_without_sending_a_request(
    server: LoopbackServer, settings: Any, template: str, door: Callable[[str], object]
) -> None:
    settings.NANOCLONE_CALLBACK_ALLOW_HTTP = True  # so the address is what gets refused
    url = template.replace("{port}", str(server.port))
    with pytest.raises(UnsafeURLError, match=r"^Refusing "):
        door(url)
    assert server.hits == []


def test_it_explains_why_a_url_is_refused() -> None:
    with pytest.raises(UnsafeURLError) as refused:
        fetch_image("http://127.0.0.1/x.png")
    assert str(refused.value) == "Refusing to fetch http://127.0.0.1/x.png: 127.0.0.1 is a loopback address"

    with pytest.raises(UnsafeURLError, match=r"127\.1 resolves to 127\.0\.0\.1, which is a loopback"):
        fetch_image("http://127.1/x.png")
    with pytest.raises(UnsafeURLError, match=r"::ffff:7f00:1 maps to 127\.0\.0\.1, a loopback address"):
        fetch_image("http://[::ffff:7f00:1]/x.png")
    with pytest.raises(UnsafeURLError, match=r"64:ff9b::a00:1 is a NAT64 address"):
        fetch_image("http://[64:ff9b::10.0.0.1]/x.png")
    with pytest.raises(UnsafeURLError, match=r"only http and https"):
        fetch_image("file:///etc/passwd")


def test_it_refuses_a_name_if_any_of_its_addresses_is_forbidden() -> None:
    dns = fake_dns({"mixed.test": ["93.184.216.34", "10.1.2.3"]})
    with pytest.raises(UnsafeURLError, match=r"mixed\.test resolves to 10\.1\.2\.3, which is a private"):
        check_callback_url("https://mixed.test/hook", resolver=dns)


@pytest.mark.parametrize(
    "address",
    ["::ffff:10.0.0.1", "2002:a9fe:a9fe::1", "64:ff9b::a00:1", "100.100.100.100", "ff0e::1", "fec0::1"],
)
def test_it_refuses_names_resolving_to_disguised_internal_addresses(address: str) -> None:
    dns = fake_dns({"sneaky.test": [address]})
    with pytest.raises(UnsafeURLError, match=r"sneaky\.test resolves to"):
        check_callback_url("https://sneaky.test/hook", resolver=dns)


def test_it_keeps_private_ranges_forbidden_when_loopback_is_allowed(loopback_allowed: None) -> None:
    for url in ["http://10.0.0.1/", "http://169.254.169.254/", "http://0.0.0.0/", "http://[fc00::1]/"]:
        with pytest.raises(UnsafeURLError):
            check_callback_url(url, require_https=False)
    assert check_callback_url("http://127.0.0.1:8000/hook", require_https=False)
    assert check_callback_url("http://[::1]:8000/hook", require_https=False)


def test_it_reports_unresolvable_hosts_as_fetch_errors() -> None:
    with pytest.raises(FetchError, match=r"Could not resolve nowhere\.test"):
        fetch_image("https://nowhere.test/img.png", resolver=fake_dns({}))


# --- fetching --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "mime", "size"),
    [("/img.png", "image/png", (8, 6)), ("/img.jpg", "image/jpeg", (10, 7)), ("/img.webp", "image/webp", (12, 9))],
)
def test_it_fetches_images_from_loopback_when_allowed(
    server: LoopbackServer, loopback_allowed: None, path: str, mime: str, size: tuple[int, int]
) -> None:
    image = fetch_image(server.url(path))
    assert (image.info.mime_type, (image.info.width, image.info.height)) == (mime, size)
    assert image.data == {"/img.png": PNG, "/img.jpg": JPEG, "/img.webp": WEBP}[path]
    assert server.hits == [path]


@pytest.mark.parametrize("path", ["/page.html", "/img.gif", "/truncated.png"])
def test_it_refuses_what_is_not_a_complete_jpeg_png_or_webp(
    server: LoopbackServer, loopback_allowed: None, path: str
) -> None:
    with pytest.raises(FetchError, match=r"not a JPEG, PNG or WEBP image|corrupt or truncated|format GIF"):
        fetch_image(server.url(path))


def test_it_refuses_http_errors(server: LoopbackServer, loopback_allowed: None) -> None:
    with pytest.raises(FetchError, match=r"answered HTTP 404"):
        fetch_image(server.url("/missing.png"))


def test_it_connects_to_the_address_it_checked_and_sends_the_original_host(
    server: LoopbackServer, loopback_allowed: None
) -> None:
    # DNS rebinding: a second lookup would answer with a private address.
    answers = iter([["127.0.0.1"], ["10.0.0.1"], ["10.0.0.1"]])
    lookups: list[str] = []

    def rebinding_dns(host: str, port: int) -> list[str]:
        lookups.append(host)
        return next(answers)

    image = fetch_image(f"http://images.test:{server.port}/img.png", resolver=rebinding_dns)
    assert image.info.mime_type == "image/png"
    assert lookups == ["images.test"]
    assert server.host_headers == [f"images.test:{server.port}"]


def test_it_refuses_a_body_cut_short(server: LoopbackServer, loopback_allowed: None) -> None:
    with pytest.raises(FetchError, match=r"closed after \d+ of \d+ bytes"):
        fetch_image(server.url("/short-body"))


def test_it_refuses_a_body_whose_declared_length_is_over_the_cap(
    server: LoopbackServer, loopback_allowed: None
) -> None:
    with pytest.raises(FetchError, match=r"larger than the 10 MB limit"):
        fetch_image(server.url("/huge-declared"))


def test_it_stops_reading_a_chunked_body_past_the_cap(
    server: LoopbackServer, loopback_allowed: None, settings: Any
) -> None:
    settings.NANOCLONE_FETCH_MAX_BYTES = 100_000  # the server streams 1 MB without a length
    with pytest.raises(FetchError, match=r"larger than the .* MB limit"):
        fetch_image(server.url("/huge-chunked"))


@pytest.mark.parametrize("path", ["/slow", "/hang"])
def test_it_gives_up_after_the_total_time_limit(
    server: LoopbackServer, loopback_allowed: None, settings: Any, path: str
) -> None:
    settings.NANOCLONE_FETCH_TIMEOUT = 1.0
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"time limit"):
        fetch_image(server.url(path))
    assert time.monotonic() - started < 3


# --- redirects -------------------------------------------------------------------------


def test_it_follows_up_to_three_redirects(server: LoopbackServer, loopback_allowed: None) -> None:
    assert fetch_image(server.url("/redirect/3")).info.mime_type == "image/png"
    assert server.hits == ["/redirect/3", "/redirect/2", "/redirect/1", "/img.png"]


def test_it_refuses_a_fourth_redirect(server: LoopbackServer, loopback_allowed: None) -> None:
    with pytest.raises(FetchError, match=r"Too many redirects"):
        fetch_image(server.url("/redirect/4"))
    assert "/img.png" not in server.hits


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_it_checks_every_redirect_target_again(
    server: LoopbackServer, loopback_allowed: None, settings: Any, code: int
) -> None:
    # The first hop must reach the loopback server, so loopback is allowed for it;
    # the server then forbids loopback before answering, as it would be for a
    # public host redirecting to an internal one.
    def forbid_loopback(path: str) -> None:
        settings.NANOCLONE_FETCH_ALLOW_LOOPBACK = False

    server.on_request = forbid_loopback
    target = server.url("/img.png", host="localhost")
    query = urllib.parse.urlencode({"code": code, "location": target})
    with pytest.raises(UnsafeURLError, match=r"Refusing to fetch http://localhost:\d+/img\.png"):
        fetch_image(server.url(f"/redirect-to?{query}"))
    assert server.hits == [f"/redirect-to?{query}"]


@pytest.mark.parametrize("location", ["file:///etc/passwd", "http://169.254.169.254/latest/", "http://[::1]/"])
def test_it_refuses_redirects_to_forbidden_places(server: LoopbackServer, settings: Any, location: str) -> None:
    def forbid_loopback(path: str) -> None:
        settings.NANOCLONE_FETCH_ALLOW_LOOPBACK = False

    settings.NANOCLONE_FETCH_ALLOW_LOOPBACK = True
    server.on_request = forbid_loopback
    query = urllib.parse.urlencode({"code": 302, "location": location})
    with pytest.raises(UnsafeURLError):
        fetch_image(server.url(f"/redirect-to?{query}"))
    assert len(server.hits) == 1


# --- TLS: the pinned address still gets the host name's certificate check --------------


def _certificates(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "NanoClone test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_path, cert_path, key_path


@pytest.fixture
def tls_server(tmp_path: Path, settings: Any) -> Iterator[tuple[LoopbackServer, list[str | None]]]:
    ca_path, cert_path, key_path = _certificates(tmp_path, "images.test")
    settings.NANOCLONE_FETCH_CA_FILE = str(ca_path)
    server_names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    context.sni_callback = lambda sslobj, name, ctx: server_names.append(name)
    srv = LoopbackServer(tls=context)
    yield srv, server_names
    srv.close()


def test_it_checks_tls_against_the_host_name_while_connecting_to_the_checked_address(
    tls_server: tuple[LoopbackServer, list[str | None]], loopback_allowed: None
) -> None:
    server, server_names = tls_server
    dns = fake_dns({"images.test": ["127.0.0.1"]})
    image = fetch_image(f"https://images.test:{server.port}/img.png", resolver=dns)
    assert image.info.mime_type == "image/png"
    assert server_names == ["images.test"]
    assert server.host_headers == [f"images.test:{server.port}"]


def test_it_refuses_a_certificate_for_another_name(
    tls_server: tuple[LoopbackServer, list[str | None]], loopback_allowed: None
) -> None:
    server, _ = tls_server
    dns = fake_dns({"other.test": ["127.0.0.1"]})
    with pytest.raises(FetchError, match=r"TLS failed for other\.test"):
        fetch_image(f"https://other.test:{server.port}/img.png", resolver=dns)
    assert server.hits == []


# --- bytes from uploads and data: URIs -------------------------------------------------


def test_it_verifies_image_bytes_by_decoding_them() -> None:
    assert verify(JPEG).info == ImageInfo(mime_type="image/jpeg", format="JPEG", width=10, height=7)
    for data in [GIF, HTML, PNG[:40], b""]:
        with pytest.raises(FetchError):
            verify(data)


def test_it_refuses_decompression_bombs(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    settings.MAX_IMAGE_PIXELS = 30
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30)  # as gallery.apps sets it at start-up
    with pytest.raises(FetchError, match=r"too many pixels"), pytest.warns(Image.DecompressionBombWarning):
        verify(PNG)  # 48 pixels: between 1x and 2x the limit
    with pytest.raises(FetchError, match=r"too many pixels"):
        verify(WEBP)  # 108 pixels: Pillow's own bomb error


def test_it_refuses_image_bytes_over_the_cap(settings: Any) -> None:
    settings.NANOCLONE_FETCH_MAX_BYTES = len(PNG) - 1
    with pytest.raises(FetchError, match=r"larger than"):
        verify(PNG)


def test_it_decodes_image_data_uris() -> None:
    encoded = base64.b64encode(PNG).decode()
    assert decode_data_uri(f"data:image/png;base64,{encoded}") == PNG
    wrapped = "\n".join(encoded[i : i + 60] for i in range(0, len(encoded), 60)).rstrip("=")
    assert decode_data_uri(f"DATA:image/PNG;base64,{wrapped}") == PNG
    assert verify(decode_data_uri(f"data:image/png;base64,{encoded}")).info.width == 8


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("data:image/png;base64,iVBORw0KGgo*&^%$", "not valid base64"),
        ("data:image/png;base64,aGVsbG8=aGVsbG8=", "not valid base64"),
        ("data:text/html;base64,PGgxPmhpPC9oMT4=", "must be image/png, image/jpeg or image/webp"),
        ("data:;base64,iVBORw0KGgo=", "must be image/png"),
        ("data:image/png,rawbytes", "base64"),
        ("data:image/png;base64", "no comma"),
        ("https://example.com/x.png", "Not a data: URI"),
    ],
)
def test_it_refuses_bad_data_uris(uri: str, message: str) -> None:
    with pytest.raises(FetchError, match=message):
        decode_data_uri(uri)


def test_it_refuses_data_uris_over_the_cap(settings: Any) -> None:
    settings.NANOCLONE_FETCH_MAX_BYTES = 1000
    with pytest.raises(FetchError, match=r"larger than"):
        decode_data_uri("data:image/png;base64," + base64.b64encode(b"\0" * 1001).decode())
    assert len(decode_data_uri("data:image/png;base64," + base64.b64encode(b"\0" * 1000).decode())) == 1000


# --- callback URLs ---------------------------------------------------------------------

PUBLIC_DNS = fake_dns({"hooks.example.com": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]})


def test_it_accepts_a_public_https_callback_url() -> None:
    url = "https://hooks.example.com/nanoclone?job=1"
    assert check_callback_url(f"  {url} ", require_https=True, resolver=PUBLIC_DNS) == url


def test_it_requires_https_for_callbacks_unless_allowed(settings: Any) -> None:
    url = "http://hooks.example.com/cb"
    with pytest.raises(UnsafeURLError, match=r"must use https"):
        check_callback_url(url, require_https=True, resolver=PUBLIC_DNS)
    assert check_callback_url(url, require_https=False, resolver=PUBLIC_DNS) == url
    with pytest.raises(UnsafeURLError, match=r"must use https"):
        check_callback_url(url, resolver=PUBLIC_DNS)  # follows the setting
    settings.NANOCLONE_CALLBACK_ALLOW_HTTP = True
    assert check_callback_url(url, resolver=PUBLIC_DNS) == url


def test_it_refuses_overlong_callback_urls() -> None:
    url = "https://hooks.example.com/" + "a" * 2048
    with pytest.raises(UnsafeURLError, match=r"longer than 2048"):
        check_callback_url(url, require_https=True, resolver=PUBLIC_DNS)


def test_it_posts_json_to_a_callback_over_the_checked_address(
    server: LoopbackServer, loopback_allowed: None, settings: Any
) -> None:
    settings.NANOCLONE_CALLBACK_ALLOW_HTTP = True
    dns = fake_dns({"hooks.test": ["127.0.0.1"]})
    status, excerpt = post_json(
        f"http://hooks.test:{server.port}/echo", b'{"ok": true}', {"X-Webhook-Secret": "s3"}, 5.0, resolver=dns
    )
    assert (status, json.loads(excerpt)) == (202, {"received": 12})
    assert server.bodies == [b'{"ok": true}']
    assert server.post_headers[0]["X-Webhook-Secret"] == "s3"
    assert server.post_headers[0]["Content-Type"] == "application/json"
    assert server.host_headers == [f"hooks.test:{server.port}"]


def test_it_does_not_follow_redirects_when_posting(
    server: LoopbackServer, loopback_allowed: None, settings: Any
) -> None:
    settings.NANOCLONE_CALLBACK_ALLOW_HTTP = True
    assert post_json(server.url("/post-redirect"), b"{}", {}, 5.0)[0] == 302
    assert server.hits == ["/post-redirect"]


def test_it_returns_only_an_excerpt_of_the_callback_answer(
    server: LoopbackServer, loopback_allowed: None, settings: Any
) -> None:
    settings.NANOCLONE_CALLBACK_ALLOW_HTTP = True
    status, excerpt = post_json(server.url("/long-answer"), b"{}", {}, 5.0)
    assert status == 200
    assert excerpt == "x" * 1024


def test_it_refuses_plain_http_callbacks_by_default(server: LoopbackServer, loopback_allowed: None) -> None:
    with pytest.raises(UnsafeURLError, match=r"must use https"):
        post_json(server.url("/echo"), b"{}", {}, 5.0)
    assert server.hits == []


def test_it_does_not_treat_public_addresses_as_forbidden() -> None:
    for address in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]:
        ip = ipaddress.ip_address(address)
        host = f"[{ip}]" if ip.version == 6 else str(ip)
        assert check_callback_url(f"https://{host}/hook", require_https=True)
