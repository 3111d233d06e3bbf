"""Python's http.server with a thread per connection (ThreadingHTTPServer), serving one small
file over HTTP/1.1 keep-alive, for the "third-party" experiment; quiet (no log line per
request). Started as  python3 python-http.py PORT DIR."""
import functools
import http.server
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the load generator expects
    # Headers and body go out in two writes: with Nagle on, the body waits for the client's
    # delayed ACK (40 ms), and that, not the I/O model, would be measured.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass


port, directory = int(sys.argv[1]), sys.argv[2]
handler = functools.partial(Handler, directory=directory)
http.server.ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()
