"""Django's WSGI app in a pool of threads under uvicorn: a2wsgi's, with one hand-over per request.

a2wsgi hands every step of a request between the event loop and the request's thread: reading
the body, then the response's start, each chunk of its body and its end, each a round trip that
wakes both threads (0.13 ms of CPU apiece on this machine; a generation made four). Here a body
with a Content-Length of at most INLINE_BODY_BYTES is read by the event loop before the thread
starts, and a response that is not streaming (Django's HttpResponse: its body is already in
memory) is sent by the event loop once the thread is done, so such a request crosses once each
way. Streaming responses (a zip of the gallery, an image file) still go chunk by chunk with
a2wsgi's back-pressure, and a larger or chunked body is read as Django asks for it.

So a request waiting for a free thread may hold its body (up to 1 MiB) where uvicorn would have
stopped reading at 64 KiB. It subclasses a2wsgi's responder and uses its internals (Body,
build_environ, the send queue): pyproject.toml pins a2wsgi to 1.10.
"""

from __future__ import annotations

import contextvars
import io
from typing import Any

from a2wsgi.wsgi import Body, WSGIMiddleware, WSGIResponder, build_environ

INLINE_BODY_BYTES = 1 << 20


def content_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def let_go(response: Any) -> None:
    """Drop what a response taken whole holds, as it may live on in reference cycles.

    DRF's response points at itself (renderer_context["response"]) and its view points at it, and
    Django's request is a cycle too, so they are freed by the cyclic garbage collector, not as the
    request ends: a generation's, having waited seconds on Gemini, only by a full collection. Until
    then they held the answer's data and its JSON, the image's base64 twice (0.55 MB for an
    emulator image, 2.6 MB for a real 1K PNG): at 128 clients in flight, serve's peak RSS went
    from 487-488 to 375-382 MiB without them (bench/memory.py, side by side).
    """
    response.content = b""
    for made_from in ("data", "context_data"):  # DRF's Response, Django's TemplateResponse
        if hasattr(response, made_from):
            setattr(response, made_from, None)


class Responder(WSGIResponder):
    held_start: dict[str, Any] | None = None  # the response's start, until its body goes with it
    whole_body: bytes | None = None  # a response that is not streaming, for the event loop to send

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        environ = build_environ(scope, Body(self.loop, receive))
        length = content_length(scope)
        inline = None
        if length is not None and length <= INLINE_BODY_BYTES:
            chunks = []
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return  # the client is gone: nothing to run (a cut-off prompt would still be paid for)
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            environ["wsgi.input"] = inline = io.BytesIO(b"".join(chunks))
        sender = self.loop.create_task(self.sender(send))
        try:
            context = contextvars.copy_context()
            await self.loop.run_in_executor(self.executor, context.run, self.wsgi, environ, self.start_response)
            if inline is not None:
                inline.close()  # let go too (see let_go): Django's request, in its cycles, may live on
            await self.send_queue.put(None)
            await sender
            if self.whole_body is not None:
                await send(self.held_start)
                await send({"type": "http.response.body", "body": self.whole_body})
            if self.exc_info is not None:
                raise self.exc_info[0].with_traceback(self.exc_info[1], self.exc_info[2])
        finally:
            if not sender.done():
                sender.cancel()

    def start_response(self, status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.exc_info = exc_info
        if not self.response_started:
            self.response_started = True
            headers = [
                (name.strip().encode("latin1").lower(), value.strip().encode("latin1"))
                for name, value in response_headers
            ]
            status_code = int(status.split(" ", 1)[0])
            self.held_start = {"type": "http.response.start", "status": status_code, "headers": headers}
        return self.write

    def write(self, chunk: bytes) -> None:
        self.send_held_start()
        self.send({"type": "http.response.body", "body": chunk, "more_body": True})

    def send_held_start(self) -> None:
        if self.held_start is not None:
            start, self.held_start = self.held_start, None
            self.send(start)  # type: ignore[arg-type]

    def wsgi(self, environ: Any, start_response: Any) -> None:
        iterable = self.app(environ, start_response)
        try:
            if getattr(iterable, "streaming", True) is False and self.held_start is not None:
                self.whole_body = b"".join(iterable)
                let_go(iterable)
                return
            self.send_held_start()  # a stream's headers go at once, as with a2wsgi
            for chunk in iterable:
                self.write(chunk)
            self.send_held_start()
            self.send({"type": "http.response.body", "body": b""})
        finally:
            getattr(iterable, "close", lambda: None)()


class ThreadedWSGI(WSGIMiddleware):
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await Responder(self.app, self.executor, self.send_queue_size)(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)
