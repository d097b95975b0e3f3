"""evaluate-budgets: placeholder until the budgets capability lands."""


def handle(event, context):
    return {"statusCode": 501, "body": {"error": "not yet"}, "headers": {}}
