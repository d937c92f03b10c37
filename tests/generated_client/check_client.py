"""Drives a running kairos daemon through a client generated from its own OpenAPI
document (openapi-python-client), as a program that only has the document would.

Usage: python check_client.py BASE_URL  (the generated package `client` importable)
"""

import datetime
import sys
import uuid

from client import Client
from client.api.jobs import (
    add_job,
    get_job,
    list_jobs,
    modify_job,
    pause_job,
    remove_job,
    resume_job,
)
from client.api.scheduler import health
from client.models import (
    DateTrigger,
    Error,
    IntervalTrigger,
    Job,
    JobChanges,
    JobOptions,
    NewJob,
    NewJobArgs,
)


def expect(condition, what):
    if not condition:
        raise SystemExit(f"FAIL: {what}")
    print(f"ok: {what}")


def main(base_url):
    # Every POST carries Content-Type: application/json, with or without a body: a web
    # page cannot send that cross-site without the browser asking first
    # (docs/threat-model.md), so a generated client sets it once for all calls.
    json_header = {"Content-Type": "application/json"}
    api = Client(
        base_url=f"{base_url}/api/v1",
        headers=json_header,
        raise_on_unexpected_status=True,
    )

    state = health.sync(client=api)
    expect(state is not None and not isinstance(state, Error), "health answers in its schema")

    # The daemon allows one task, `command`: the document's NewJob is that task's job,
    # with its args as a model of their own (the document states each task's args).
    job_id = f"generated-{uuid.uuid4().hex[:8]}"
    due = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    added = add_job.sync(
        client=api,
        body=NewJob(
            task="command",
            args=NewJobArgs(argv=["true"]),
            trigger=DateTrigger(type_="date", run_date=due.isoformat()),
            id=job_id,
            options=JobOptions(max_instances=1, misfire_grace_time="30s"),
        ),
    )
    expect(isinstance(added, Job), "a one-off job is added and comes back as a Job")
    expect(added.id == job_id, "with the id asked for")
    expect(added.next_run_time is not None, "and a next run time")

    read = get_job.sync(job_id, client=api)
    expect(isinstance(read, Job) and read.task == "command", "it reads back as a Job")

    page = list_jobs.sync(client=api, q=job_id)
    expect(page is not None and not isinstance(page, Error), "jobs are listed")
    expect(any(job.id == job_id for job in page.jobs), "the list holds it")

    recurring = add_job.sync(
        client=api,
        body=NewJob(
            task="command",
            args=NewJobArgs(argv=["true"]),
            trigger=IntervalTrigger(type_="interval", minutes=30),
            id=f"{job_id}-every",
        ),
    )
    expect(isinstance(recurring, Job), "a recurring job is added")

    changed = modify_job.sync(job_id, client=api, body=JobChanges(name="renamed"))
    expect(isinstance(changed, Job) and changed.name == "renamed", "a change is answered with the job")

    paused = pause_job.sync(job_id, client=api)
    expect(isinstance(paused, Job) and paused.paused, "pause answers a paused job")
    resumed = resume_job.sync(job_id, client=api)
    expect(isinstance(resumed, Job) and not resumed.paused, "resume answers a running job")

    missing = get_job.sync("no-such-job", client=Client(base_url=f"{base_url}/api/v1", headers=json_header))
    expect(isinstance(missing, Error), "an unknown id is answered with the Error schema")

    for gone in (job_id, f"{job_id}-every"):
        response = remove_job.sync_detailed(gone, client=api)
        expect(response.status_code == 204, f"{gone} is removed")
    print("the generated client works")


if __name__ == "__main__":
    main(sys.argv[1])
