"""A worker process that reads request bodies for the gateway (see ``request_body.BodyReader``).

Run as ``python -m moltconsole_backend.gateway.body_worker``: it reads length-prefixed requests
on stdin and answers on stdout until stdin closes. It imports only what reading a body needs.
"""

import sys

from .request_body import serve_worker

if __name__ == "__main__":
    serve_worker(sys.stdin.buffer, sys.stdout.buffer)
