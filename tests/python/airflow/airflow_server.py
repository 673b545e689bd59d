"""A real Apache Airflow 3 API server for the end-to-end tests (tests/tests/airflow_server.rs).

    python tests/python/airflow/airflow_server.py JWT_LIFETIME_S MAX_PAGE_LIMIT ADMIN_PASSWORD

- Airflow 3.3.2 with the FAB auth manager (apache-airflow-providers-fab 3.10.2), over SQLite in a
  temporary AIRFLOW_HOME removed at exit. One admin user, `admin` with ADMIN_PASSWORD (role
  Admin), made by `airflow users create`; seed the others through the server's own API
  (POST /auth/fab/v1/users with the admin's token from POST /auth/token).
- Tokens from POST /auth/token live JWT_LIFETIME_S seconds (`[api_auth] jwt_expiration_time`),
  with no leeway (`jwt_leeway = 0`): a token is refused ("Token Expired", 401) as soon as its
  `exp` is past. Pages hold at most MAX_PAGE_LIMIT users (`[api] maximum_page_limit`: a larger
  `limit` is cut to it without a word, as on a real deployment that lowered it).
- Listens on 127.0.0.1 on a free port and prints "READY <port>" on stdout once the API answers;
  every other line of stdout answers a command.
- Commands, one per line on stdin:
    SQL <statement>     runs the statement on the server's database and answers "OK" (the API
                        cannot deactivate a user: `active` is not a field it takes)
    RESTART <secret> <lifetime_s>
                        restarts the API server on the same port and database with another JWT
                        signing secret (every token issued before is then "Invalid JWT token",
                        403) and token lifetime, and answers "READY <port>"
    QUIT                stops the API server and exits
- Never outlives a test: exits (stopping the API server) when stdin reaches end of file, when its
  parent process dies, or after $UNIGATE_AIRFLOW_MAX_SECONDS seconds (default 600). The API
  server's own output goes to stderr only with UNIGATE_AIRFLOW_LOG=1.
"""

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

READY_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Airflow:
    def __init__(self, lifetime_s: str, max_page_limit: str, admin_password: str):
        self.home = tempfile.mkdtemp(prefix="unigate-airflow-")
        self.port = free_port()
        self.server = None
        self.output = sys.stderr if os.environ.get("UNIGATE_AIRFLOW_LOG") else subprocess.DEVNULL
        self.env = dict(
            os.environ,
            AIRFLOW_HOME=self.home,
            AIRFLOW__CORE__AUTH_MANAGER=(
                "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
            ),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME=lifetime_s,
            AIRFLOW__API_AUTH__JWT_LEEWAY="0",
            AIRFLOW__API_AUTH__JWT_SECRET="unigate-first-secret",
            AIRFLOW__API__MAXIMUM_PAGE_LIMIT=max_page_limit,
            AIRFLOW__API__WORKERS="1",
        )
        airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
        self.airflow = airflow
        self.run("db", "migrate")
        self.run(
            "users", "create", "--username", "admin", "--password", admin_password,
            "--role", "Admin", "--firstname", "Ada", "--lastname", "Admin",
            "--email", "admin@example.test",
        )

    def run(self, *args: str) -> None:
        subprocess.run(
            [self.airflow, *args], env=self.env, check=True,
            stdout=self.output, stderr=self.output,
        )

    def start(self) -> None:
        self.server = subprocess.Popen(
            [self.airflow, "api-server", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env, stdout=self.output, stderr=self.output,
            start_new_session=True,
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        health = f"http://127.0.0.1:{self.port}/api/v2/monitor/health"
        while True:
            if self.server.poll() is not None:
                sys.exit(f"airflow api-server exited with {self.server.returncode}")
            try:
                with urllib.request.urlopen(health, timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                sys.exit(f"airflow api-server did not answer within {READY_TIMEOUT_S} s")
            time.sleep(0.25)
        print(f"READY {self.port}", flush=True)

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            # The server's own workers are in its session: stop them all.
            try:
                os.killpg(self.server.pid, 15)
                self.server.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.server.pid, 9)
                except ProcessLookupError:
                    pass
                self.server.wait()
        self.server = None

    def sql(self, statement: str) -> None:
        with sqlite3.connect(os.path.join(self.home, "airflow.db")) as db:
            db.execute(statement)
        print("OK", flush=True)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)


def watch(airflow: Airflow) -> None:
    """Stops everything when the parent dies or the time is up (stdin may never close then)."""
    parent = os.getppid()
    deadline = time.monotonic() + float(os.environ.get("UNIGATE_AIRFLOW_MAX_SECONDS", "600"))
    while os.getppid() == parent and time.monotonic() < deadline:
        time.sleep(0.5)
    airflow.close()
    os._exit(0)


def main() -> None:
    lifetime_s, max_page_limit, admin_password = sys.argv[1:4]
    airflow = Airflow(lifetime_s, max_page_limit, admin_password)
    threading.Thread(target=watch, args=(airflow,), daemon=True).start()
    try:
        airflow.start()
        for line in sys.stdin:
            command, _, argument = line.strip().partition(" ")
            if command == "SQL":
                airflow.sql(argument)
            elif command == "RESTART":
                secret, lifetime_s = argument.split()
                airflow.stop()
                airflow.env["AIRFLOW__API_AUTH__JWT_SECRET"] = secret
                airflow.env["AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME"] = lifetime_s
                airflow.start()
            elif command == "QUIT":
                break
            elif command:
                sys.exit(f"unknown command {command!r}")
    finally:
        airflow.close()


if __name__ == "__main__":
    main()
