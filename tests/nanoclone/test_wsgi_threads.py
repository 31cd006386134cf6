"""nanoclone.wsgi_threads under a real uvicorn on a real socket, with a small WSGI app of Django
responses: what crosses between the event loop and the request's thread, and what still streams."""

from __future__ import annotations

import http.client
import io
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.http import HttpResponse, StreamingHttpResponse

from nanoclone import wsgi_threads
from tests.conftest import uvicorn_in_a_thread

first_chunk_may_go, second_chunk_may_go = threading.Event(), threading.Event()
kept: list[Any] = []  # what the app made, as reference cycles could keep it
calls: list[str] = []


def app(environ: dict[str, Any], start_response: Any) -> Any:
    """Echoes the body; /stream streams two chunks, each once the test lets it."""
    calls.append(environ["PATH_INFO"])
    if environ["PATH_INFO"] == "/stream":

        def chunks() -> Iterator[bytes]:
            first_chunk_may_go.wait(10)
            yield b"first;"
            second_chunk_may_go.wait(10)
            yield b"second"

        response: Any = StreamingHttpResponse(chunks(), content_type="text/plain")
    else:
        body = environ["wsgi.input"].read()
        response = HttpResponse(b"echo:" + body, status=201 if body else 404, content_type="text/plain")
        response["X-Length"] = str(len(body))
        response.data = {"echo": body}  # as DRF's Response and Django's TemplateResponse hold what they were made from
        response.context_data = {"echo": body}
        kept[:] = [environ, response]
    status = f"{response.status_code} {response.reason_phrase}"
    start_response(status, list(response.items()))
    return response


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """The port, and every message a request's thread handed to the event loop."""
    handed: list[dict[str, Any]] = []
    send = wsgi_threads.Responder.send

    def counted_send(self: wsgi_threads.Responder, message: Any) -> None:
        handed.append(message)
        send(self, message)

    monkeypatch.setattr(wsgi_threads.Responder, "send", counted_send)
    served = wsgi_threads.ThreadedWSGI(app, workers=4)  # type: ignore[arg-type]  # a2wsgi's WSGI types
    first_chunk_may_go.clear()
    second_chunk_may_go.clear()
    calls.clear()
    with uvicorn_in_a_thread(served, lifespan="off") as port:
        yield port, handed
        first_chunk_may_go.set()
        second_chunk_may_go.set()


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    connection.request(method, path, body=body, headers=headers or {})
    return connection.getresponse()


def test_a_small_body_and_a_whole_response_cross_between_the_threads_once(server: Any) -> None:
    port, handed = server
    response = request(port, "POST", "/echo", b'{"prompt": "a cat"}', {"Content-Type": "application/json"})
    assert (response.status, response.read()) == (201, b'echo:{"prompt": "a cat"}')
    assert response.getheader("X-Length") == "19"
    assert response.getheader("Content-Type") == "text/plain"
    assert handed == []  # the event loop read the body and sent the answer


def test_a_response_sent_whole_lets_go_of_what_it_holds(server: Any) -> None:
    port, _ = server
    response = request(port, "POST", "/echo", b"x" * 100_000)
    assert response.read() == b"echo:" + b"x" * 100_000
    environ, made = kept
    assert (made.content, made.data, made.context_data) == (b"", None, None)
    assert environ["wsgi.input"].closed


def test_an_empty_answer_keeps_its_status(server: Any) -> None:
    port, handed = server
    response = request(port, "GET", "/echo")
    assert (response.status, response.read()) == (404, b"echo:")
    assert handed == []


@pytest.mark.parametrize("size", [512 * 1024, wsgi_threads.INLINE_BODY_BYTES + 1])
def test_a_large_body_arrives_whole_read_by_the_event_loop_or_as_the_app_asks(server: Any, size: int) -> None:
    port, handed = server
    body = (bytes(range(256)) * (size // 256 + 1))[:size]  # several of uvicorn's messages
    response = request(port, "POST", "/echo", body)
    assert response.status == 201
    assert response.read() == b"echo:" + body
    assert handed == []
    environ, _ = kept
    assert isinstance(environ["wsgi.input"], io.BytesIO) is (size <= wsgi_threads.INLINE_BODY_BYTES)


def test_a_request_whose_client_leaves_before_its_body_has_come_is_not_run(server: Any) -> None:
    port, _ = server
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(b'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"prompt": "a ca')
        time.sleep(0.2)
    time.sleep(0.5)
    assert calls == []
    assert request(port, "POST", "/echo", b"whole").status == 201  # and the server goes on
    assert calls == ["/echo"]


def test_a_chunked_body_arrives_whole(server: Any) -> None:
    port, _ = server
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", "/echo", body=iter([b"one,", b"two,", b"three"]), encode_chunked=True)
    response = connection.getresponse()
    assert (response.status, response.read()) == (201, b"echo:one,two,three")


def test_a_streaming_response_still_streams(server: Any) -> None:
    port, handed = server
    response = request(port, "GET", "/stream", timeout=3)  # its headers come before any chunk, as with a2wsgi
    assert response.status == 200
    first_chunk_may_go.set()
    # The first chunk arrives while the app still holds back the second.
    assert response.read1(100) == b"first;"
    second_chunk_may_go.set()
    assert response.read() == b"second"
    assert [message["type"] for message in handed] == ["http.response.start", *["http.response.body"] * 3]
