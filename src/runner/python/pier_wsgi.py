"""Pier's WSGI shim: frames every response so uWSGI's HTTP/1.1 keep-alive socket can reuse the connection.

uWSGI's http11-socket neither chunks nor closes a response that has no Content-Length: the client waits for the
socket time-out (4 s) before it sees the end. This wrapper, loaded in front of the app, adds Content-Length when
the body is a list or tuple (the common case), and otherwise sends the body with chunked transfer encoding, as
gunicorn does. The app to load is named by PIER_WSGI_APP ("module:callable").
"""
import importlib
import os

_module_name, _, _callable_name = os.environ["PIER_WSGI_APP"].partition(":")
_app = getattr(importlib.import_module(_module_name), _callable_name or "application")


def _chunked(body):
    try:
        for part in body:
            if part:
                yield b"%x\r\n%s\r\n" % (len(part), part)
        yield b"0\r\n\r\n"
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()


def _is_framed(headers):
    return any(name.lower() in ("content-length", "transfer-encoding") for name, _ in headers)


def _needs_no_body(environ, status):
    return environ.get("REQUEST_METHOD") == "HEAD" or status[:1] == "1" or status[:3] in ("204", "304")


def application(environ, start_response):
    state = {}

    def write(data):
        # Legacy write(): headers go out now, so an unframed body is chunked from here on.
        if "write" not in state:
            headers = state["headers"]
            state["chunk"] = not _is_framed(headers) and not _needs_no_body(environ, state["status"])
            extra = [("Transfer-Encoding", "chunked")] if state["chunk"] else []
            state["write"] = start_response(state["status"], headers + extra, state["exc_info"])
        if data:
            state["write"](b"%x\r\n%s\r\n" % (len(data), data) if state["chunk"] else data)

    def capture(status, headers, exc_info=None):
        if exc_info is not None and "write" in state:
            raise exc_info[1].with_traceback(exc_info[2])
        state["status"], state["headers"], state["exc_info"] = status, list(headers), exc_info
        return write

    body = _app(environ, capture)
    if "write" in state:
        return _chunked(body) if state["chunk"] else body
    if "status" not in state:
        return body  # the app never started a response; let uWSGI report it
    status, headers, exc_info = state["status"], state["headers"], state["exc_info"]
    if _is_framed(headers) or _needs_no_body(environ, status) or environ.get("SERVER_PROTOCOL") == "HTTP/1.0":
        start_response(status, headers, exc_info)
        return body
    if isinstance(body, (list, tuple)):
        data = b"".join(body)
        start_response(status, headers + [("Content-Length", str(len(data)))], exc_info)
        return [data]
    start_response(status, headers + [("Transfer-Encoding", "chunked")], exc_info)
    return _chunked(body)
