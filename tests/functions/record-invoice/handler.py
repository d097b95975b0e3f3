"""A test stand-in for email-invoice: records each body it is called with, one file per call
(under RECORD_DIR), so a test can count the hand-offs."""
import os
import uuid
from pathlib import Path


def handle(event, context):
    Path(os.environ["RECORD_DIR"], f"{uuid.uuid4()}.json").write_bytes(event.body)
    return {"statusCode": 202, "body": {"recorded": True}}
