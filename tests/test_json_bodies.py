"""Every function's JSON body goes through one parser: the same one-line 400 reasons."""
import pytest

from chargeback.billing.month_close import parse_options
from chargeback.capacity.tick import requested_now
from chargeback.core.responses import RequestError
from chargeback.core.settings import load
from chargeback.documents.delivery import requested_invoice_id
from chargeback.usage.events import BodyError, parse_body

PARSERS = {
    "receive-usage": parse_body,
    "aggregate-month": parse_options,
    "meter-capacity": lambda body: requested_now(body, load({})),
    "email-invoice": requested_invoice_id,
}
HOSTILE = {
    # json's recursive decoder gives up near 1,000 levels with RecursionError
    b"[" * 100_000 + b"]" * 100_000: "body is nested too deeply",
    b"[" + b"9" * 5000 + b"]": "body is not usable JSON: Exceeds the limit (4300 digits)",
    b'{"a": "\xff"}': "body is not UTF-8 JSON",
    b'{"a": ': "body is not JSON: Expecting value at line 1 column 7",
}


@pytest.mark.parametrize("function", PARSERS)
@pytest.mark.parametrize("body, reason", HOSTILE.items(), ids=["deep", "digits", "utf8", "cut"])
def test_a_body_that_defeats_the_parser_is_one_line_reason_in_every_function(
        function, body, reason):
    with pytest.raises((RequestError, BodyError)) as refused:
        PARSERS[function](body)
    if isinstance(refused.value, RequestError):
        assert refused.value.status == 400
    assert reason in str(refused.value) and "\n" not in str(refused.value)
