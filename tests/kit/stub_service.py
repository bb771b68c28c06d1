"""A stand-in HTTP service for the kit's own tests: it answers like a tenantkit service would.

Reads STUB_HOST/STUB_PORT; GET /readyz answers 200; GET /env/<NAME> echoes a variable.
STUB_CRASH makes it print that text and exit 3 before listening.
"""

from __future__ import annotations

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/readyz":
            body = b'{"status": "ready"}'
        elif self.path.startswith("/env/"):
            body = os.environ.get(self.path[5:], "<unset>").encode()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        print("stub:", format % args, file=sys.stderr, flush=True)


def main() -> None:
    crash = os.environ.get("STUB_CRASH")
    if crash:
        print(crash, file=sys.stderr, flush=True)
        sys.exit(3)
    server = ThreadingHTTPServer((os.environ["STUB_HOST"], int(os.environ["STUB_PORT"])), Handler)
    print(f"stub: listening on {server.server_address}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
