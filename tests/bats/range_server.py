"""A loopback HTTP server for the ks-fetch tests: serves files under --root
with byte ranges (which python's http.server does not do), logs every
request, and can misbehave on purpose.

  --port-file F   where the port it bound (an ephemeral one) is written
  --log F         one line per request: "GET PATH RANGE" (RANGE "-" if none)
  --cut-after N   the first response with a body sends N bytes, then hangs up
  --no-range      ignores Range headers (answers 200 with the whole file)

/redirect/PATH answers 302 to /PATH.
"""
import argparse
import http.server
import os
import re
import sys
import threading

args = None
lock = threading.Lock()
cut_pending = True


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        pass

    def do_GET(self):
        global cut_pending
        rng = self.headers.get("Range")
        with lock, open(args.log, "a") as log:
            log.write("GET %s %s\n" % (self.path, rng or "-"))
        if self.path.startswith("/redirect/"):
            self.send_response(302)
            self.send_header("Location", self.path[len("/redirect"):])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        rel = os.path.normpath(self.path.lstrip("/"))
        path = os.path.join(args.root, rel)
        if rel.startswith("..") or not os.path.isfile(path):
            self.send_error(404)
            return
        size = os.path.getsize(path)
        start, end = 0, size - 1
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
        partial = m is not None and not args.no_range
        if partial:
            start = int(m.group(1))
            if m.group(2):
                end = min(int(m.group(2)), size - 1)
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % size)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        self.send_response(206 if partial else 200)
        if partial:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "none" if args.no_range else "bytes")
        self.end_headers()
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read(end - start + 1)
        with lock:
            cut = args.cut_after is not None and cut_pending
            cut_pending = cut_pending and not cut
        if cut:
            self.wfile.write(data[: args.cut_after])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(data)


def main():
    global args
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--cut-after", type=int)
    p.add_argument("--no-range", action="store_true")
    args = p.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % server.server_address[1])
    os.rename(tmp, args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
