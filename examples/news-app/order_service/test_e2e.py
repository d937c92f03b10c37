"""End-to-end checks of the order service against a real kairos daemon and MariaDB.

test_e2e.sh starts everything and runs this with the venv's python:
  KAIROS_URL, KAIROS_TOKEN   the daemon's API and the order service's token
  SERVICE_URL, SHORT_URL     the service with a 30 minute and a 2 second payment window
  OFFLINE_URL                the service with a kairos that does not answer
  TABLE_PREFIX, MYSQL_*      where the service keeps its orders
Each check prints what it proves; the first failure exits non-zero.
"""

import os
import sys
import time
import uuid

import pymysql
import requests

KAIROS_URL = os.environ.get("KAIROS_URL", "").rstrip("/")
TOKEN = os.environ.get("KAIROS_TOKEN", "")
SERVICE = os.environ.get("SERVICE_URL", "").rstrip("/")
SHORT = os.environ.get("SHORT_URL", "").rstrip("/")
OFFLINE = os.environ.get("OFFLINE_URL", "").rstrip("/")
ORDERS = os.environ.get("TABLE_PREFIX", "") + "orders"
REQUESTS = os.environ.get("TABLE_PREFIX", "") + "order_requests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def check(condition, message):
    if not condition:
        print(f"FAIL: {message}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {message}")


def sql(statement, args=()):
    with pymysql.connect(
        host=os.environ.get("MYSQL_HOST", "127.0.0.1"),
        port=int(os.environ.get("MYSQL_PORT", "3306")),
        user=os.environ.get("MYSQL_USER", "root"),
        password=os.environ.get("MYSQL_PASSWORD", ""),
        database=os.environ.get("MYSQL_DATABASE", "test"),
        autocommit=True,
    ) as db, db.cursor() as cur:
        cur.execute(statement, args)
        return cur.fetchall()


def status_in_db(order_id):
    rows = sql(f"SELECT status FROM `{ORDERS}` WHERE id = %s", (order_id,))
    return rows[0][0] if rows else None


def job(job_id):
    return requests.get(f"{KAIROS_URL}/jobs/{job_id}", headers=AUTH, timeout=5)


def cancel_jobs():
    """Ids of every orders.cancel job kairos holds."""
    response = requests.get(
        f"{KAIROS_URL}/jobs", params={"task": "orders.cancel", "limit": 1000},
        headers=AUTH, timeout=5,
    )
    response.raise_for_status()
    return sorted(j["id"] for j in response.json()["jobs"])


def create(base, key, user_id, amount):
    return requests.post(
        f"{base}/orders", json={"user_id": user_id, "amount_cents": amount},
        headers={"Idempotency-Key": key}, timeout=10,
    )


def main():
    # 1. Create an order: unpaid in MariaDB, and its cancel job in kairos.
    key = str(uuid.uuid4())
    first = create(SERVICE, key, 7, 1999)
    check(first.status_code == 201, f"POST /orders answers 201 ({first.status_code} {first.text})")
    order = first.json()
    oid = order["id"]
    check(order["status"] == "unpaid", "the new order is unpaid")
    check(status_in_db(oid) == "unpaid", "MariaDB holds it as unpaid")
    found = job(f"order-cancel-{oid}")
    check(found.status_code == 200, f"kairos holds job order-cancel-{oid} ({found.status_code})")
    body = found.json()
    check(body["task"] == "orders.cancel" and body["args"] == {"order_id": oid},
          "the job runs orders.cancel for this order")
    check(body.get("next_run_time") is not None, "the job is scheduled (a next run time)")

    # 2. The client retries the create (its answer was lost): same order, still one job.
    retry = create(SERVICE, key, 7, 1999)
    check(retry.status_code == 201 and retry.json()["id"] == oid,
          "a retry with the same Idempotency-Key returns the same order")
    check(retry.headers.get("Idempotent-Replayed") == "true", "and says it is a replay")
    rows = sql(f"SELECT COUNT(*) FROM `{ORDERS}`")[0][0]
    check(rows == 1, f"MariaDB holds one order, not two ({rows})")
    check(cancel_jobs() == [f"order-cancel-{oid}"], "kairos holds exactly one cancel job")
    # The service's own call to kairos is idempotent too: the same request, sent again
    # with the key the service uses, is answered from kairos' cache, not made twice.
    repeat = requests.post(
        f"{KAIROS_URL}/jobs", headers={**AUTH, "Idempotency-Key": f"order-{oid}-cancel"},
        json={"id": f"order-cancel-{oid}", "task": "orders.cancel", "args": {"order_id": oid},
              "trigger": {"type": "date", "delay": "30m"}}, timeout=5,
    )
    check(repeat.status_code == 201 and repeat.headers.get("Idempotent-Replayed") == "true",
          f"kairos replays the service's POST /jobs ({repeat.status_code} {repeat.text[:200]})")
    check(cancel_jobs() == [f"order-cancel-{oid}"], "still exactly one cancel job")
    reused = create(SERVICE, key, 7, 2999)
    check(reused.status_code == 422, "the same key for another order is refused (422)")

    # 3. Pay: the order is paid and its job gone; paying again is harmless.
    paid = requests.post(f"{SERVICE}/orders/{oid}/pay", timeout=10)
    check(paid.status_code == 200 and paid.json()["status"] == "paid",
          f"POST /orders/{oid}/pay answers 200 paid ({paid.status_code} {paid.text})")
    check(job(f"order-cancel-{oid}").status_code == 404, "kairos no longer holds the cancel job")
    again = requests.post(f"{SERVICE}/orders/{oid}/pay", timeout=10)
    check(again.status_code == 200, "paying again answers 200 (the DELETE's 404 is fine)")
    check(cancel_jobs() == [], "no cancel job is left")
    check(status_in_db(oid) == "paid", "MariaDB holds the order as paid")

    # 4. kairos is unreachable while an order is created: the order is saved, the answer
    # is 503, and the client's retry (same key, kairos back) adds the missing job.
    key = str(uuid.uuid4())
    down = create(OFFLINE, key, 9, 999)
    check(down.status_code == 503, f"with kairos down, POST /orders answers 503 ({down.status_code})")
    rows = sql(f"SELECT order_id FROM `{REQUESTS}` WHERE idempotency_key = %s", (key,))
    check(len(rows) == 1, "the order was saved with its key")
    did = rows[0][0]
    check(job(f"order-cancel-{did}").status_code == 404, "and has no cancel job yet")
    healed = create(SERVICE, key, 9, 999)
    check(healed.status_code == 201 and healed.json()["id"] == did,
          "the retry returns the same order")
    check(job(f"order-cancel-{did}").status_code == 200, "and its cancel job now exists")
    paid = requests.post(f"{SERVICE}/orders/{did}/pay", timeout=10)
    check(paid.status_code == 200 and job(f"order-cancel-{did}").status_code == 404,
          "paying it removes the job")

    # 5. An order left unpaid through a 2 second window: kairos cancels it.
    late = create(SHORT, str(uuid.uuid4()), 8, 4999)
    check(late.status_code == 201, f"another order is created ({late.status_code} {late.text})")
    lid = late.json()["id"]
    check(job(f"order-cancel-{lid}").status_code == 200, f"kairos holds order-cancel-{lid}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and status_in_db(lid) != "cancelled":
        time.sleep(0.2)
    check(status_in_db(lid) == "cancelled", "kairos cancelled the unpaid order in MariaDB")
    stamped = sql(f"SELECT cancelled_at IS NOT NULL FROM `{ORDERS}` WHERE id = %s", (lid,))
    check(stamped[0][0] == 1, "and stamped cancelled_at")
    check(status_in_db(oid) == "paid" and status_in_db(did) == "paid",
          "the paid orders stay paid")
    late_pay = requests.post(f"{SHORT}/orders/{lid}/pay", timeout=10)
    check(late_pay.status_code == 409, "paying the cancelled order is refused (409)")
    # A date job is removed once it has run.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and job(f"order-cancel-{lid}").status_code != 404:
        time.sleep(0.2)
    check(job(f"order-cancel-{lid}").status_code == 404, "the cancel job is gone after its run")


def drop_tables():
    sql(f"DROP TABLE IF EXISTS `{ORDERS}`, `{REQUESTS}`")


if __name__ == "__main__":
    if sys.argv[1:] == ["--drop-tables"]:
        drop_tables()
    else:
        main()
        print("all order-service checks passed")
