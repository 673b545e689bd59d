"""A real SCIM 2.0 service provider for the end-to-end tests: scim2-server (PyPI) over memory.

    python tests/python/scim_server.py PORT TOKEN

- Listens on 127.0.0.1:PORT (PORT 0 = a free port) and prints "READY <port>" on stdout once the
  socket listens; nothing else goes to stdout.
- Every endpoint but /ServiceProviderConfig needs "Authorization: Bearer TOKEN" (scim2-server's
  own bearer-token application, as `scim2-server --bearer-token TOKEN`); any other request gets
  401 with a SCIM Error body. An empty TOKEN turns authentication off.
- The SCIM root is served at /scim/v2, /v2 and / alike: /scim/v2/Users, /v2/Users and /Users are
  the same collection. Resources start empty; seed them with POST /Users.
- Resources live in memory (scim2_server.memory.InMemoryStorage) and die with the process.
- Paging by index (RFC 7644 §3.4.2.4): startIndex (1-based, default 1) and count; count is capped
  at 1000 (ServiceProviderConfig filter.maxResults) and is 1000 when absent. Without sortBy the
  resources are ordered by id (random uuid4 hex), a stable but arbitrary order; sortBy and
  sortOrder are supported. Cursor paging (RFC 9865) is not announced.
- Never outlives a test: exits when its stdin reaches end of file (when stdin is a pipe: spawn
  it with a piped stdin and keep the write end open; dropping it stops the server), when its
  parent process dies, or after $UNIGATE_SCIM_MAX_SECONDS seconds (default 600).
  Set UNIGATE_SCIM_LOG=1 to log each request on stderr.
"""

import os
import stat
import sys
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler
from wsgiref.simple_server import make_server

from scim2_models import ScimProvider
from scim2_server.memory import InMemoryStorage
from scim2_server.service import ScimService
from scim2_server.testserver.application import BEARER_TOKEN_SCHEME
from scim2_server.testserver.application import BearerTokenApplication
from scim2_server.testserver.cli import ThreadingWSGIServer
from scim2_server.utils import load_default_resource_types
from scim2_server.utils import load_default_schemas
from scim2_server.utils import load_default_service_provider_config

URL_PREFIX = "/scim"


def build_application(token: str) -> BearerTokenApplication:
    """The application of the `scim2-server` command, with one bearer token and no tenants."""
    config = load_default_service_provider_config()
    if token:
        config.authentication_schemes = [
            *(config.authentication_schemes or []),
            BEARER_TOKEN_SCHEME,
        ]
    provider = ScimProvider.from_discovery(
        load_default_schemas().values(),
        load_default_resource_types().values(),
        config=config,
    )
    return BearerTokenApplication(
        InMemoryStorage(),
        provider,
        service=ScimService(provider),
        bearer_tokens=[token] if token else [],
    )


def strip_prefix(app):
    """Serve the application under /scim as well: /scim/v2/Users is /v2/Users.

    The prefix moves to SCRIPT_NAME, so meta.location and Location carry /scim/v2/... URLs.
    """

    def wrapped(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == URL_PREFIX or path.startswith(URL_PREFIX + "/"):
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + URL_PREFIX
            environ["PATH_INFO"] = path[len(URL_PREFIX) :]
        return app(environ, start_response)

    return wrapped


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the signature of the base class)
        if os.environ.get("UNIGATE_SCIM_LOG"):
            super().log_message(format, *args)


def exit_now(reason: str) -> None:
    print(f"scim_server: exiting: {reason}", file=sys.stderr, flush=True)
    os._exit(0)


def watch_stdin() -> None:
    """Exit when stdin reaches end of file; only when it is a pipe (not /dev/null, not a tty)."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError):
        return
    if not stat.S_ISFIFO(mode) and not stat.S_ISSOCK(mode):
        return
    while True:
        try:
            chunk = os.read(sys.stdin.fileno(), 4096)
        except OSError:
            chunk = b""
        if not chunk:
            exit_now("stdin closed")


def watch_lifetime(max_seconds: float) -> None:
    """Exit after max_seconds, or as soon as the parent process is gone."""
    parent = os.getppid()
    deadline = time.monotonic() + max_seconds
    while True:
        if time.monotonic() >= deadline:
            exit_now(f"maximum lifetime of {max_seconds:g} s reached")
        if os.getppid() != parent:
            exit_now("parent process gone")
        time.sleep(0.5)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: scim_server.py PORT TOKEN", file=sys.stderr)
        return 2
    port = int(argv[1])
    token = argv[2]
    max_seconds = float(os.environ.get("UNIGATE_SCIM_MAX_SECONDS", "600"))

    app = strip_prefix(build_application(token))
    server = make_server(
        "127.0.0.1",
        port,
        app,
        server_class=ThreadingWSGIServer,
        handler_class=QuietHandler,
    )
    print(f"READY {server.server_port}", flush=True)
    threading.Thread(target=watch_stdin, daemon=True).start()
    threading.Thread(target=watch_lifetime, args=(max_seconds,), daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
