"""A WSGI echo app for the client interop tests (run by uWSGI over SCGI).

It answers with what it received, so a test can check what the client sent:

- ``/raw``: the request body, as it came.
- ``/status/NNN``: status NNN with a short text body.
- ``/cookies``: three ``Set-Cookie`` headers.
- anything else: a JSON report (method, path, query, every string variable,
  body length and SHA-256). Values are given as the bytes that arrived,
  read as UTF-8.

The body is always sent, HEAD included: a naive app does that, and the
client must still hand back an empty body for HEAD.
"""

import hashlib
import json


def raw_text(value):
    # PEP 3333: variables are "bytes as latin-1"; give back the UTF-8 text.
    return value.encode("latin-1").decode("utf-8", "replace")


def read_body(environ):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ["wsgi.input"]
    chunks = []
    left = length
    while left > 0:
        chunk = stream.read(min(left, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    method = environ.get("REQUEST_METHOD", "")
    body = read_body(environ)
    if path == "/raw":
        start_response("200 OK", [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(len(body))),
        ])
        return [body]
    if path.startswith("/status/"):
        code = int(path[len("/status/"):])
        text = "status %d from uwsgi\n" % code
        start_response("%d Whatever" % code, [
            ("Content-Type", "text/plain"),
            ("X-Echo-Method", method),
        ])
        return [text.encode()]
    if path == "/cookies":
        start_response("200 OK", [
            ("Content-Type", "text/plain"),
            ("Set-Cookie", "a=1; Path=/"),
            ("Set-Cookie", "b=2; HttpOnly"),
            ("Set-Cookie", "c=3; Max-Age=60"),
        ])
        return [b"cookies\n"]
    env = {
        name: raw_text(value)
        for name, value in environ.items()
        if isinstance(value, str)
    }
    report = json.dumps({
        "peer": "uwsgi",
        "method": method,
        "path": raw_text(path),
        "query": raw_text(environ.get("QUERY_STRING", "")),
        "env": env,
        "bodyLength": len(body),
        "bodySha256": hashlib.sha256(body).hexdigest(),
    }).encode()
    start_response("200 OK", [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(report))),
        ("X-Echo-Method", method),
    ])
    return [report]
