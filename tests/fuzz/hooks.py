"""Schemathesis hooks for tests/fuzz/api-fuzz.sh, loaded through SCHEMATHESIS_HOOKS.

POST /jobs answers 422 idempotency_key_reused when an Idempotency-Key comes back with
another body, as the Idempotency-Key header draft says it should. Schemathesis reuses
generated header values across cases with different bodies (its coverage phase starts
every case from the same values), so every POST /jobs after the first would be refused
for that reason alone and nothing else about the operation would be tested. A valid key
gets a suffix of its own per case, as a real client makes one key per request; keys
that are invalid on purpose (empty, too long, not visible ASCII) stay as generated.
"""

import re
import uuid

import schemathesis

VALID_KEY = re.compile(r"^[!-~]([ -~]*[!-~])?$")
SUFFIX_LENGTH = 33  # "-" and 32 hex digits
MAX_KEY_LENGTH = 255


@schemathesis.hook
def map_case(context, case):
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() != "idempotency-key":
            continue
        key = headers[name]
        if isinstance(key, str) and VALID_KEY.match(key) and len(key) <= MAX_KEY_LENGTH - SUFFIX_LENGTH:
            headers[name] = f"{key}-{uuid.uuid4().hex}"
    return case
