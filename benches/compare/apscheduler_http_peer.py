"""APScheduler 3.11 behind HTTP: the peer of kairos's HTTP add workload.

APScheduler has no HTTP API; an order service that uses it adds one the usual way, a
small web server whose handler calls `scheduler.add_job`. This is that server, built
for speed rather than features: the standard library's ThreadingHTTPServer (one thread
per connection, keep-alive), no framework, and the same request as kairos's
`POST /api/v1/jobs` (`{"id", "task", "args", "trigger": {"type": "date", "run_date"}}`),
answered 201 with a small JSON body. The scheduler is a BackgroundScheduler with the
store under test (SQLAlchemyJobStore on SQLite or PostgreSQL, or memory), started, so
each add reaches the store as it would in production.

benches/http_adds.rs drives it with the same clients as kairos (`--external`).

Usage: apscheduler_http_peer.py STORE PORT
STORE: memory, sqlite, or a postgres:// URL. Prints `listening PORT` when ready.
"""

import json
import os
import signal
import sys
import tempfile
import threading
import uuid
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler

TOKEN = "bench-token"


def cancel_order(order_id):
    """What the job would do; nothing fires during the benchmark (due in 2099)."""


def store_for(spec, workdir):
    if spec == "memory":
        return MemoryJobStore(), None
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    if spec == "sqlite":
        return SQLAlchemyJobStore(url="sqlite:///" + os.path.join(workdir, "aps.db")), None
    url = spec.replace("postgres://", "postgresql+psycopg2://", 1)
    table = "aps_http_" + uuid.uuid4().hex[:8]
    return SQLAlchemyJobStore(url=url, tablename=table), table


def main():
    store_spec, port = sys.argv[1], int(sys.argv[2])
    workdir = tempfile.mkdtemp(prefix="aps-http-")
    store, table = store_for(store_spec, workdir)
    scheduler = BackgroundScheduler(
        jobstores={"default": store},
        executors={"default": ThreadPoolExecutor(16)},
        timezone="UTC",
    )
    scheduler.start()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path != "/api/v1/jobs":
                return self.answer(404, {"error": {"code": "route_not_found"}})
            if self.headers.get("Authorization") != "Bearer " + TOKEN:
                return self.answer(401, {"error": {"code": "unauthorized"}})
            try:
                body = json.loads(raw)
                run_date = datetime.fromisoformat(body["trigger"]["run_date"].replace("Z", "+00:00"))
                job = scheduler.add_job(
                    cancel_order, "date", run_date=run_date, id=body["id"],
                    kwargs=body.get("args") or {}, misfire_grace_time=None,
                )
            except Exception as error:  # the peer answers like an API would
                return self.answer(422, {"error": {"code": "invalid_input", "message": str(error)}})
            self.answer(201, {"id": job.id, "next_run_time": job.next_run_time.isoformat()})

    def stop(_signal, _frame):
        raise KeyboardInterrupt

    # run.sh stops it with SIGTERM (background jobs of a script ignore SIGINT).
    signal.signal(signal.SIGTERM, stop)
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print("listening", server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        scheduler.shutdown(wait=False)
        if table is not None:
            store.jobs_t.drop(store.engine, checkfirst=True)


if __name__ == "__main__":
    threading.current_thread().name = "main"
    main()
