"""The news app's order service, reduced to what it asks of kairos.

Creating an order stores it as unpaid and, in the same request, adds a one-off
`orders.cancel` job to kairos that cancels the order when its payment window closes.
Paying marks the order paid and removes the job. kairos' `orders.cancel` runs one
conditional UPDATE (`... WHERE id = ? AND status = 'unpaid'`), so a cancel that races
a payment, or a job that could not be removed, never cancels a paid order
(docs/news-app.md, "The order-cancel pattern").

Retries are harmless end to end:
- A client sends `Idempotency-Key` with POST /orders; the service keeps the key with the
  order it made, so a retried create returns that order instead of making another.
- The service's own call to kairos carries an `Idempotency-Key` derived from the order
  id and a job id of its own (`order-cancel-<id>`), so a retried call never makes a
  second job; a retried create whose first attempt failed to reach kairos adds the
  missing job then.

Settings come from the environment (see README.md next to this file).
"""

import hashlib
import json
import logging
import os

import pymysql
import requests
from flask import Flask, jsonify, request

log = logging.getLogger("order_service")

KAIROS_URL = os.environ.get("KAIROS_URL", "http://127.0.0.1:8080/api/v1").rstrip("/")
KAIROS_TOKEN = os.environ.get("KAIROS_TOKEN", "")
# How long an order may stay unpaid: kairos' duration words ("30m", "2s").
PAYMENT_WINDOW = os.environ.get("PAYMENT_WINDOW", "30m")
# Tables are `<prefix>orders` and `<prefix>order_requests`.
TABLE_PREFIX = os.environ.get("TABLE_PREFIX", "")
ORDERS = f"{TABLE_PREFIX}orders"
REQUESTS = f"{TABLE_PREFIX}order_requests"
# Seconds to wait for kairos before giving up on a request.
KAIROS_TIMEOUT = float(os.environ.get("KAIROS_TIMEOUT", "5"))

if not all(c.isalnum() or c == "_" for c in TABLE_PREFIX):
    raise SystemExit("TABLE_PREFIX may hold only letters, digits and _")

app = Flask(__name__)


class KairosUnavailable(Exception):
    """kairos could not be reached or refused the change; the client may retry."""


def connect():
    """A fresh connection per request: the example stays free of pooling."""
    return pymysql.connect(
        host=os.environ.get("MYSQL_HOST", "127.0.0.1"),
        port=int(os.environ.get("MYSQL_PORT", "3306")),
        user=os.environ.get("MYSQL_USER", "root"),
        password=os.environ.get("MYSQL_PASSWORD", ""),
        database=os.environ.get("MYSQL_DATABASE", "test"),
        autocommit=False,
        cursorclass=pymysql.cursors.DictCursor,
    )


def create_tables():
    """The news app's `orders` table (examples/news-app/schema.mysql.sql) with ids
    given by the database, and the idempotency keys clients sent."""
    with connect() as db, db.cursor() as cur:
        cur.execute(
            f"""CREATE TABLE IF NOT EXISTS `{ORDERS}` (
              id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
              user_id BIGINT UNSIGNED NOT NULL,
              amount_cents INT UNSIGNED NOT NULL,
              status VARCHAR(16) NOT NULL DEFAULT 'unpaid',
              created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
              cancelled_at DATETIME NULL,
              KEY status (status)
            ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4"""
        )
        cur.execute(
            f"""CREATE TABLE IF NOT EXISTS `{REQUESTS}` (
              idempotency_key VARCHAR(255) NOT NULL PRIMARY KEY,
              body_sha256 CHAR(64) NOT NULL,
              order_id BIGINT UNSIGNED NOT NULL
            ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4"""
        )
        db.commit()


@app.cli.command("init-db")
def init_db_command():
    """Create the service's tables if they do not exist."""
    create_tables()
    print(f"tables {ORDERS} and {REQUESTS} are ready")


def kairos(method, path, **kwargs):
    headers = kwargs.pop("headers", {})
    if KAIROS_TOKEN:
        headers["Authorization"] = f"Bearer {KAIROS_TOKEN}"
    try:
        return requests.request(
            method, f"{KAIROS_URL}{path}", headers=headers, timeout=KAIROS_TIMEOUT, **kwargs
        )
    except requests.RequestException as error:
        raise KairosUnavailable(f"kairos did not answer: {error}") from error


def cancel_job_id(order_id):
    return f"order-cancel-{order_id}"


def add_cancel_job(order_id):
    """Asks kairos to cancel the order when the payment window closes; safe to repeat."""
    job = {
        "id": cancel_job_id(order_id),
        "task": "orders.cancel",
        "args": {"order_id": order_id},
        "trigger": {"type": "date", "delay": PAYMENT_WINDOW},
    }
    # Same order, same key, same body: kairos answers a repeat with its first answer.
    response = kairos(
        "POST", "/jobs", json=job, headers={"Idempotency-Key": f"order-{order_id}-cancel"}
    )
    if response.status_code == 201:
        return
    code = error_code(response)
    # The job is there already: added before kairos restarted and forgot the key, or
    # by a request that is still finishing.
    if response.status_code == 409 and code in ("job_exists", "idempotency_key_in_use"):
        return
    raise KairosUnavailable(
        f"kairos refused the cancel job ({response.status_code} {code}): {response.text[:300]}"
    )


def remove_cancel_job(order_id):
    """Drops the cancel job; one that is gone already (it ran, or a retry) is fine."""
    response = kairos("DELETE", f"/jobs/{cancel_job_id(order_id)}")
    if response.status_code not in (200, 204, 404):
        raise KairosUnavailable(
            f"kairos refused to remove the cancel job ({response.status_code}): "
            f"{response.text[:300]}"
        )


def error_code(response):
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return ""


def problem(status, message):
    return jsonify({"error": message}), status


def read_order(cur, order_id):
    cur.execute(
        f"SELECT id, user_id, amount_cents, status FROM `{ORDERS}` WHERE id = %s", (order_id,)
    )
    return cur.fetchone()


@app.get("/health")
def health():
    return {"status": "ok"}


@app.post("/orders")
def create_order():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return problem(400, "send a JSON object: {\"user_id\": 7, \"amount_cents\": 1999}")
    user_id, amount = body.get("user_id"), body.get("amount_cents")
    for name, value in (("user_id", user_id), ("amount_cents", amount)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return problem(400, f"{name} must be a whole number, 0 or more")
    key = request.headers.get("Idempotency-Key", "")
    if len(key) > 255:
        return problem(400, "Idempotency-Key must be at most 255 characters")
    body_hash = hashlib.sha256(
        json.dumps({"user_id": user_id, "amount_cents": amount}, sort_keys=True).encode()
    ).hexdigest()

    replayed = False
    with connect() as db, db.cursor() as cur:
        order_id = None
        if key:
            cur.execute(
                f"SELECT order_id, body_sha256 FROM `{REQUESTS}` WHERE idempotency_key = %s",
                (key,),
            )
            seen = cur.fetchone()
            if seen:
                if seen["body_sha256"] != body_hash:
                    return problem(422, "this Idempotency-Key was used for another order")
                order_id, replayed = seen["order_id"], True
        if order_id is None:
            cur.execute(
                f"INSERT INTO `{ORDERS}` (user_id, amount_cents, status) VALUES (%s, %s, 'unpaid')",
                (user_id, amount),
            )
            order_id = cur.lastrowid
            if key:
                try:
                    cur.execute(
                        f"INSERT INTO `{REQUESTS}` (idempotency_key, body_sha256, order_id) "
                        "VALUES (%s, %s, %s)",
                        (key, body_hash, order_id),
                    )
                except pymysql.err.IntegrityError:
                    # A concurrent request with this key won: use its order, drop ours.
                    db.rollback()
                    cur.execute(
                        f"SELECT order_id FROM `{REQUESTS}` WHERE idempotency_key = %s", (key,)
                    )
                    order_id, replayed = cur.fetchone()["order_id"], True
            db.commit()
        order = read_order(cur, order_id)

    # After the commit, so kairos never cancels an order that does not exist. If this
    # fails the order stays unpaid without a job: the client's retry (same key) adds it.
    if order["status"] == "unpaid":
        try:
            add_cancel_job(order_id)
        except KairosUnavailable as error:
            log.warning("order %s: %s", order_id, error)
            return problem(503, f"order {order_id} saved, its cancel job not; retry: {error}")
    response = jsonify(order)
    response.status_code = 201
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@app.get("/orders/<int:order_id>")
def show_order(order_id):
    with connect() as db, db.cursor() as cur:
        order = read_order(cur, order_id)
    return jsonify(order) if order else problem(404, f"no order {order_id}")


@app.post("/orders/<int:order_id>/pay")
def pay_order(order_id):
    with connect() as db, db.cursor() as cur:
        # The same conditional statement kairos' cancel runs, the other way round: of a
        # payment and a cancel racing, the database lets exactly one win.
        cur.execute(
            f"UPDATE `{ORDERS}` SET status = 'paid' WHERE id = %s AND status = 'unpaid'",
            (order_id,),
        )
        db.commit()
        order = read_order(cur, order_id)
    if order is None:
        return problem(404, f"no order {order_id}")
    if order["status"] == "cancelled":
        return problem(409, f"order {order_id} was cancelled: its payment window closed")
    # Paid (now, or by an earlier attempt of this request). A cancel job left behind
    # would find the order paid and leave it alone, so a failure here is only logged.
    try:
        remove_cancel_job(order_id)
    except KairosUnavailable as error:
        log.warning("order %s is paid, its cancel job is left to find that: %s", order_id, error)
    return jsonify(order)


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
