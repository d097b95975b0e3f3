"""An SMTP server on loopback that misbehaves at the protocol level as real ones do
(aiosmtpd always answers QUIT with 221, so these faults need a server of their own).

FaultySmtp(quit="421 ...")     answers 250 to DATA, then 421 to QUIT
FaultySmtp(quit=DROP)          answers 250 to DATA, then closes the connection at QUIT
FaultySmtp(quit=RESET)         answers 250 to DATA, then resets the connection (RST) at QUIT
FaultySmtp(data=DROP)          stores the message, then closes before answering DATA
FaultySmtp(rcpt={addr: "451 ..."})  answers RCPT for that address with the reply
`data` may also be a list of replies used in turn (DROP, then "250 OK").
Every message it stored is in .received (bytes), whatever it answered after.
"""
from __future__ import annotations

import email
import socket
import socketserver
import struct
import threading
from email.policy import default as default_policy

DROP = object()   # close the connection instead of answering
RESET = object()  # reset it (RST, as a crashed or overloaded server's kernel does)


class FaultySmtp:
    def __init__(self, quit="221 Bye", data="250 OK", rcpt: dict | None = None):
        self.quit = quit
        self.data = list(data) if isinstance(data, list) else None
        self.data_reply = data
        self.rcpt = dict(rcpt or {})
        self.received: list[bytes] = []
        self.rcpt_seen: list[str] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                if owner._session(self.rfile, self.wfile) is RESET:
                    self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                            struct.pack("ii", 1, 0))

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True,
                         kwargs={"poll_interval": 0.05}).start()  # a quick shutdown()
        self.url = f"smtp://127.0.0.1:{self.server.server_address[1]}"

    def messages(self) -> list[email.message.EmailMessage]:
        with self.lock:
            return [email.message_from_bytes(m, policy=default_policy) for m in self.received]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _next_data_reply(self):
        with self.lock:
            if self.data is not None:
                return self.data.pop(0) if len(self.data) > 1 else self.data[0]
            return self.data_reply

    def _session(self, rfile, wfile) -> None:
        def say(line: str) -> None:
            wfile.write(line.encode() + b"\r\n")
            wfile.flush()

        say("220 faulty.example ESMTP")
        while True:
            line = rfile.readline()
            if not line:
                return
            verb = line.decode(errors="replace").strip()
            upper = verb.upper()
            if upper.startswith(("EHLO", "HELO")):
                say("250 faulty.example")
            elif upper.startswith("MAIL FROM"):
                say("250 OK")
            elif upper.startswith("RCPT TO"):
                address = verb.split(":", 1)[1].strip().strip("<>").split(">")[0]
                with self.lock:
                    self.rcpt_seen.append(address)
                say(self.rcpt.get(address, "250 OK"))
            elif upper == "DATA":
                say("354 End data with <CR><LF>.<CR><LF>")
                body = b""
                while True:
                    chunk = rfile.readline()
                    if not chunk or chunk == b".\r\n":
                        break
                    body += chunk[1:] if chunk.startswith(b"..") else chunk
                with self.lock:
                    self.received.append(body)
                reply = self._next_data_reply()
                if reply is DROP:
                    return
                say(reply)
            elif upper == "QUIT":
                if self.quit is DROP or self.quit is RESET:
                    return self.quit
                say(self.quit)
                return
            else:  # RSET, NOOP
                say("250 OK")
