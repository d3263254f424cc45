"""C1's baseline: a trivial WSGI app on waitress, as the central service is served.

It answers every protocol request with a fixed body of the right shape (an empty
page, or an accepted batch) without a database, so the same branch rounds cost here
only waitress, HTTP and the reading of the request. ``python -m bench.bare_wsgi
THREADS`` prints its URL and serves until its standard input closes.
"""

import json
import sys
import threading

from waitress import create_server

PAGE = json.dumps({"items": [], "cursor": "bench-baseline-cursor." + "x" * 80, "more": False}).encode()
ACK = json.dumps({"accepted": 5, "duplicates": 0}).encode()


def app(environ, start_response):
    environ["wsgi.input"].read()
    body = ACK if environ["REQUEST_METHOD"] == "POST" else PAGE
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


if __name__ == "__main__":
    server = create_server(app, host="127.0.0.1", port=0, threads=int(sys.argv[1]), ident="bench-baseline")
    threading.Thread(target=server.run, daemon=True).start()
    print(f"http://127.0.0.1:{server.effective_port}", flush=True)
    sys.stdin.read()
    server.close()
