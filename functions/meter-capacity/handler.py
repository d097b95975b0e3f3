"""meter-capacity: not built yet; it arrives with its own issue. Nothing here pretends to work."""
from chargeback.http import error


def handle(event, context):
    return error(501, "not implemented yet: meter-capacity arrives with its own issue")
