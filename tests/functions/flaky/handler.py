"""A test function that answers 503 for the first FLAKY_FAILURES calls of each
X-Call-Id (counted in files under FLAKY_STATE_DIR), then 200 with the attempt count."""
import os
from pathlib import Path


def handle(event, context):
    state = Path(os.environ["FLAKY_STATE_DIR"])
    call_id = event.headers.get("X-Call-Id", "sync")
    counter = state / f"{call_id}.count"
    attempt = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(attempt))
    if attempt <= int(os.environ.get("FLAKY_FAILURES", "2")):
        return {"statusCode": 503, "body": {"error": f"attempt {attempt}: try again"}}
    return {"statusCode": 200, "body": {"attempts": attempt, "echo": event.body.decode()},
            "headers": {"X-Handled-By": "flaky"}}
