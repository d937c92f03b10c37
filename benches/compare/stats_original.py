"""The original news app's nightly statistics job, for the `stats_correct` benchmark.

What the news-app backend did (docs/news-app.md): for each counter,
run its query, fetch every row, and replace the sorted set with one MULTI/EXEC
pipeline of DEL + one ZADD with all pairs. The queries are kairos's fixed ones (passed
in), so both sides compute the same counters and only the approach differs.

    stats_original.py --mysql-url mysql://root@127.0.0.1:3306/db \
        --redis-url redis://127.0.0.1:6379/0 --prefix bench-py: --counters counters.json

Prints one JSON line: {"system": "original", "seconds": …, "peak_rss_kib": …,
"members": …}. The peak is the process's VmHWM, read from /proc/self/status.
"""

import argparse
import json
import sys
import time
from urllib.parse import unquote, urlparse

import pymysql
import redis


def peak_rss_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mysql-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--prefix", default="")
    parser.add_argument("--counters", required=True, help="a JSON file: [[key, query], ...]")
    args = parser.parse_args()

    with open(args.counters) as file:
        counters = json.load(file)
    url = urlparse(args.mysql_url)
    started = time.perf_counter()
    db = pymysql.connect(
        host=url.hostname or "127.0.0.1",
        port=url.port or 3306,
        user=unquote(url.username or "root"),
        password=unquote(url.password or ""),
        database=url.path.lstrip("/"),
    )
    r = redis.Redis.from_url(args.redis_url)
    members = 0
    for key, query in counters:
        with db.cursor() as cursor:
            cursor.execute(query)
            rows = cursor.fetchall()
        pipe = r.pipeline(transaction=True)
        pipe.delete(args.prefix + key)
        if rows:
            pipe.zadd(args.prefix + key, {str(member): count for member, count in rows})
        pipe.execute()
        members += len(rows)
    seconds = time.perf_counter() - started
    json.dump(
        {"system": "original", "seconds": seconds, "peak_rss_kib": peak_rss_kib(), "members": members},
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
