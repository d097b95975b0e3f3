"""One webhook attempt: POST the signed body, bounded as a whole by a deadline.

A per-read timeout (requests' `timeout`) does not bound an attempt: an
endpoint that sends a header line every 1.5 s keeps a 2 s read timeout
satisfied for ever. Here the connection is made with the timeout, and a
watchdog shuts the socket down when the attempt's deadline (connect to
status line, WEBHOOK_TIMEOUT_SECONDS from the start) passes, which ends any
read in progress at once. The status line and headers are all that is read;
the answer's body is not. Redirects are not followed. No proxy: endpoints are
called directly (http.client, the standard library's client).
"""
from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from urllib.parse import urlsplit

from chargeback.core.db import one_line


def post(url: str, body: bytes, headers: dict[str, str], timeout_s: float,
         tls: ssl.SSLContext | None = None) -> tuple[int | None, str | None]:
    """(status code, None) for an answer (2xx or not), (None, reason) for none within
    `timeout_s` seconds from now, whatever the endpoint does."""
    deadline = time.monotonic() + timeout_s
    parts = urlsplit(url)
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout_s,
                                           context=tls or ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    watchdog = None
    cut = threading.Event()
    late = f"no answer within {timeout_s:g} s (the whole attempt)"
    try:
        conn.connect()  # bounded by timeout_s
        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _cut,
                                   (conn.sock, cut))
        watchdog.daemon = True
        watchdog.start()
        conn.request("POST", path, body=body, headers=headers)
        code = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        if cut.is_set() or time.monotonic() >= deadline:
            return None, late
        return None, one_line(exc)[:300]
    finally:
        if watchdog is not None:
            watchdog.cancel()
        conn.close()
    if cut.is_set():  # the headers were cut short: whatever was read is no answer
        return None, late
    return code, None if 200 <= code < 300 else f"answered {code}"


def _cut(sock: socket.socket, cut: threading.Event) -> None:
    cut.set()
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
