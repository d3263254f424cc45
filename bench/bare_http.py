"""P6's baseline: a bare standard-library HTTP server answering one fixed JSON body.

``python -m bench.bare_http`` prints its URL and serves until its standard input
closes. It runs in a process of its own, as the web app does, so the load
generator's threads do not share its GIL.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = json.dumps({"rows": [{"period": f"2026-01-{day:02}", "visits_self_service": day} for day in range(1, 31)]}).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as browsers use it
    #: Headers and body go out in two writes; with Nagle the second waits 40 ms for an ACK.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    #: Room for every client's connection at once; the default 5 drops some, and a
    #: dropped connection attempt is retried only after a second.
    request_queue_size = 128


if __name__ == "__main__":
    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    print(f"http://127.0.0.1:{server.server_address[1]}/", flush=True)
    sys.stdin.read()
    server.shutdown()
