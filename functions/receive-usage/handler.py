"""receive-usage: not built yet; it arrives with its own issue. Nothing here pretends to work."""
from chargeback.http import error


def handle(event, context):
    return error(501, "not implemented yet: receive-usage arrives with its own issue")
