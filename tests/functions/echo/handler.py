"""A test function: what it returns is chosen by the `mode` query parameter."""
import json
import os


def handle(event, context):
    mode = event.query.get("mode", "dict")
    if mode == "str":
        return "plain text"
    if mode == "list":
        return {"statusCode": 200, "body": [1, "two", {"three": 3}]}
    if mode == "status":
        return {"statusCode": 418, "body": {"teapot": True},
                "headers": {"X-Custom": "yes", "Cache-Control": "no-store"}}
    if mode == "raise":
        raise ValueError("the handler broke\nsecond line must not leak")
    return {"statusCode": 200, "body": {
        "method": event.method, "path": event.path, "query": dict(event.query),
        "body": event.body.decode(), "header": event.headers.get("X-Test-Header"),
        "topic": event.headers.get("X-Topic"), "connector": event.headers.get("X-Connector"),
        "hostname": context.hostname, "pid": os.getpid(), "json": json.loads(event.body) if event.body else None}}
