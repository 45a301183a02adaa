"""HTTP/1.1 messages for the service proxy's per-request mode, parsed by httptools.

httptools wraps llhttp, the parser uvicorn (and so the recommender) uses. A `RequestParser`
turns what one client connection sends into a queue of parts: a `RequestHead`, body bytes
(chunked again when the request came chunked), and None at the end of each request. A
`ResponseParser` does the same for one pod's answer. Both hold only what they were last fed:
bodies are streamed on, never collected.

Limits (`TooLarge`, answered by the proxy, then the connection is closed): a request head of
more than `MAX_HEADERS` header lines or `MAX_HEAD_BYTES`, or trailers past the same bounds,
get 431; a body over the proxy's limit gets 413, from `Content-Length` before any of it is
read, or as soon as the chunks' data passes it.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import httptools

MAX_HEAD_BYTES = 65536  # request line plus headers; trailers too; a pod's response head
MAX_HEADERS = 100  # header lines in a head, trailer lines after a chunked body
_HEAD_TOO_LARGE = b"431 Request Header Fields Too Large"
_BODY_TOO_LARGE = b"413 Content Too Large"


class HttpError(Exception):
    """A malformed or truncated HTTP message: the connection is dropped."""


class TooLarge(HttpError):
    """A request over a limit: answered with `answer` (413 or 431), then the connection is
    closed."""

    def __init__(self, status: bytes, detail: str) -> None:
        super().__init__(detail)
        self.answer = canned(status, detail.encode())


def canned(status: bytes, detail: bytes) -> bytes:
    """A whole JSON answer of the proxy's own, closing the connection."""
    body = b'{"detail": "' + detail + b'"}'
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\nconnection: close\r\n\r\n"
        + body
    )


NO_UPSTREAM = canned(b"503 Service Unavailable", b"no ready upstream pod")
BAD_GATEWAY = canned(b"502 Bad Gateway", b"the upstream pod closed the connection")


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A request head as the proxy sends it on (rebuilt from what httptools parsed)."""

    raw: bytes
    method: bytes
    keep_alive: bool


def _is_chunked(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(
        name.lower() == b"transfer-encoding" and b"chunked" in value.lower()
        for name, value in headers
    )


def _lines(headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(name + b": " + value + b"\r\n" for name, value in headers)


def _version(parser: httptools.HttpRequestParser | httptools.HttpResponseParser) -> bytes:
    version = parser.get_http_version()
    return b"1.1" if version == "1.1" else version.encode()


def _too_large_head(what: str) -> TooLarge:
    return TooLarge(_HEAD_TOO_LARGE, what)


class RequestParser:
    """The requests of one client connection, as a queue of parts (see the module)."""

    def __init__(self, limit: int) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._limit = limit
        self._parts: collections.deque[RequestHead | bytes | None] = collections.deque()
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._trailers: list[tuple[bytes, bytes]] = []
        self._in_head = self._chunked = False
        self.idle = True  # between two requests
        self._unparsed = 0  # bytes fed inside a head, or since the last body byte
        self._body = 0

    def feed(self, data: bytes) -> None:
        """Parse `data`; `TooLarge` past a limit, `HttpError` on anything malformed."""
        body = self._body
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, TooLarge):
                raise exc.__context__ from None
            raise HttpError(str(exc)) from exc
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            raise HttpError(f"bad or unsupported request: {exc!r}") from exc
        if self.idle or self._body != body:
            self._unparsed = 0
        else:
            self._unparsed += len(data)
        if self._unparsed > MAX_HEAD_BYTES:  # a head, chunk line or trailer without an end
            where = "request head is" if self._in_head else "request trailers are"
            raise _too_large_head(f"{where} larger than {MAX_HEAD_BYTES} bytes")

    @property
    def queued(self) -> bool:
        return bool(self._parts)

    def next_head(self) -> RequestHead | None:
        """The next request's head, if it was parsed already."""
        if not self._parts:
            return None
        head = self._parts.popleft()
        if not isinstance(head, RequestHead):  # the parser queues a head before its body
            raise TypeError(f"expected a request head, found {type(head).__name__}")
        return head

    def next_body(self) -> tuple[bytes, bool]:
        """The body bytes parsed so far, and whether the request ended with them."""
        data: list[bytes] = []
        while self._parts:
            part = self._parts.popleft()
            if part is None:
                return b"".join(data), True
            if not isinstance(part, bytes):  # a head never follows before its body's end
                raise TypeError(f"expected body bytes, found {type(part).__name__}")
            data.append(part)
        return b"".join(data), False

    # httptools callbacks (a `TooLarge` raised here stops the parser; `feed` re-raises it)
    def on_message_begin(self) -> None:
        self._url, self._headers, self._trailers = b"", [], []
        self._in_head, self.idle, self._body = True, False, 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:
            self._headers.append((name, value))
            if len(self._headers) > MAX_HEADERS:
                raise _too_large_head(f"request head has more than {MAX_HEADERS} header lines")
            return
        self._trailers.append((name, value))
        if len(self._trailers) > MAX_HEADERS or len(_lines(self._trailers)) > MAX_HEAD_BYTES:
            raise _too_large_head(
                f"request trailers pass {MAX_HEADERS} lines or {MAX_HEAD_BYTES} bytes"
            )

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser, headers = self._parser, _lines(self._headers)
        if len(self._url) + len(headers) > MAX_HEAD_BYTES:
            raise _too_large_head(f"request head is larger than {MAX_HEAD_BYTES} bytes")
        for name, value in self._headers:
            if name.lower() == b"content-length" and int(value) > self._limit:
                raise TooLarge(_BODY_TOO_LARGE, body_detail(self._limit))
        self._chunked = _is_chunked(self._headers)
        method = parser.get_method()
        first = b"%s %s HTTP/%s\r\n" % (method, self._url, _version(parser))
        self._parts.append(
            RequestHead(first + headers + b"\r\n", method, parser.should_keep_alive())
        )

    def on_body(self, data: bytes) -> None:
        self._body += len(data)
        if self._body > self._limit:
            raise TooLarge(_BODY_TOO_LARGE, body_detail(self._limit))
        self._parts.append(b"%x\r\n%b\r\n" % (len(data), data) if self._chunked else data)

    def on_message_complete(self) -> None:
        if self._chunked:
            self._parts.append(b"0\r\n" + _lines(self._trailers) + b"\r\n")
        self._parts.append(None)
        self.idle = True


def body_detail(limit: int) -> str:
    return f"request body is larger than the {limit}-byte limit of the stack's proxy"


class ResponseParser:
    """One pod's answer to `request`, parsed as it comes (for where it ends and whether the
    connection stays open) and sent on as it came; only its head is rewritten when the proxy
    closes the connection after it."""

    def __init__(self, request: RequestHead) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._skip_body = request.method == b"HEAD"  # llhttp would wait for the body
        self._head: list[bytes] = []  # what came up to the end of the head
        self.seen = 0
        self.headed = self.complete = self.keep_alive = self.delimited = False

    def feed(self, data: bytes) -> bytes:
        """Parse `data`; return what to send on now (nothing until the head is whole)."""
        headed = self.headed
        self.seen += len(data)
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            raise HttpError(f"bad answer from the pod: {exc!r}") from exc
        if headed:
            return data
        self._head.append(data)
        if not self.headed:
            if self.seen > MAX_HEAD_BYTES:
                raise HttpError(f"the pod's response head is larger than {MAX_HEAD_BYTES} bytes")
            return b""
        data, self._head = b"".join(self._head), []
        return data

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.headed and name.lower() in (b"content-length", b"transfer-encoding"):
            self.delimited = True

    def on_headers_complete(self) -> None:
        self.keep_alive, self.headed = self._parser.should_keep_alive(), True
        if self._skip_body:
            self.complete = True

    def on_message_complete(self) -> None:
        self.complete = True


def closing(answer: bytes) -> bytes:
    """`answer` (a response head and what followed it) with `Connection: close`."""
    head, _, rest = answer.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"connection: close"]) + b"\r\n\r\n" + rest
