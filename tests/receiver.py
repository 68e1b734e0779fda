"""A real HTTP webhook receiver on loopback, for tests and the chaos benchmark."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable

Responder = Callable[[dict[str, str], bytes], int]


class Receiver:
    """Records every POST (headers, body, the status it answered); answers scripted ``codes`` in order,
    then whatever ``respond(headers, body)`` says (default 204)."""

    def __init__(self, codes: list[int] | None = None, respond: Responder | None = None):
        self.requests: list[dict] = []
        self.codes = list(codes or [])
        self.lock = threading.Lock()
        receiver = self

        def answer(headers: dict[str, str], body: bytes) -> int:
            if receiver.codes:
                return receiver.codes.pop(0)
            return respond(headers, body) if respond else 204

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.lock:
                    code = answer(headers, body)
                    receiver.requests.append({"headers": headers, "body": body.decode(), "code": code})
                self.send_response(code)
                if 300 <= code < 400:
                    self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered_ids(self) -> set[str]:
        """Distinct message ids answered with a 2xx."""
        return {r["headers"]["webhook-id"] for r in self.requests if 200 <= r["code"] < 300}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def trickle_head(connection, seconds_per_byte: float, bytes_sent: int = 600) -> None:
    """Answer a request on ``connection`` (plain or TLS) with the start of a 200 whose head never ends: a byte every
    ``seconds_per_byte`` (a receiver holding a webhook attempt for as long as it likes)."""
    import time

    try:
        connection.recv(65536)
        connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        for _ in range(bytes_sent):
            connection.sendall(b"x")
            time.sleep(seconds_per_byte)
    except OSError:
        pass
    finally:
        connection.close()
