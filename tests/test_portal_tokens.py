"""Portal tokens and series shaping: pure rules, no HTTP (the end-to-end tests are in
test_portal.py)."""
import base64
import json
from datetime import datetime, timedelta, timezone

import jwt
import pytest

from chargeback.core.responses import RequestError
from chargeback.core import tokens
from chargeback.portal import series

KEY = "k" * 64
NOW = datetime(2026, 9, 15, 12, tzinfo=timezone.utc)


def _b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_a_token_names_its_tenant_and_the_one_invoice_it_opens():
    token = tokens.issue(KEY, "acme", NOW, timedelta(days=120), invoice="INV-2026-000001")
    claims = tokens.verify(KEY, token, NOW + timedelta(days=119))
    assert (claims.tenant, claims.invoice) == ("acme", "INV-2026-000001")
    # the same invoice, issued at the same instant, always gives the same link
    assert token == tokens.issue(KEY, "acme", NOW, timedelta(days=120), invoice="INV-2026-000001")


# PyJWT's reasons (jwt.exceptions), after our "the token is not valid: "; our own checks
# (expiry against the caller's clock, sub a namespace name, exp a whole second within
# PORTAL_TOKEN_MAX_DAYS) say theirs
@pytest.mark.parametrize("forge, reason", [
    (lambda: tokens.issue("w" * 32, "acme", NOW, timedelta(days=1)),
     "the token is not valid: Signature verification failed"),
    (lambda: tokens.issue(KEY, "acme", NOW - timedelta(days=2), timedelta(days=1)),
     "the token has expired; ask for a new link"),
    (lambda: f"{_b64({'alg': 'none', 'typ': 'JWT'})}."
             f"{_b64({'sub': 'acme', 'exp': 4_000_000_000})}.",
     "the token is not valid: The specified alg value is not allowed"),
    (lambda: jwt.encode({"sub": "acme"}, KEY, algorithm="HS256"),
     'the token is not valid: Token is missing the "exp" claim'),
    (lambda: jwt.encode({"sub": "acme", "exp": 4_000_000_000}, KEY, algorithm="HS512"),
     "the token is not valid: The specified alg value is not allowed"),
    (lambda: jwt.encode({"sub": "../x", "exp": 4_000_000_000}, KEY, algorithm="HS256"),
     "the token's sub is not a tenant name"),
    (lambda: "not-a-token", "the token is not valid: Not enough segments"),
    # an exp PyJWT takes but that is no whole second, or past PORTAL_TOKEN_MAX_DAYS
    # (120 days by default) from now: refused, not a 500 (issue 33)
    (lambda: jwt.encode({"sub": "acme", "exp": "4000000000"}, KEY, algorithm="HS256"),
     "the token's exp is not a whole number of seconds"),
    (lambda: jwt.encode({"sub": "acme", "exp": 1e20}, KEY, algorithm="HS256"),
     "the token's exp is not a whole number of seconds"),
    (lambda: jwt.encode({"sub": "acme", "exp": 253402300799}, KEY, algorithm="HS256"),
     "the token's exp is more than 120 days away (PORTAL_TOKEN_MAX_DAYS)"),  # 9999-12-31
])
def test_forged_expired_and_unsigned_tokens_are_refused(forge, reason):
    with pytest.raises(tokens.Unauthorized) as refused:
        tokens.verify(KEY, forge(), NOW)
    assert str(refused.value) == reason


def test_a_token_lives_at_most_the_configured_days_from_now():
    now = datetime.now(timezone.utc)  # PyJWT checks exp against the real clock too
    token = tokens.issue(KEY, "acme", now, timedelta(days=30))
    assert tokens.verify(KEY, token, now, max_days=30).tenant == "acme"
    with pytest.raises(tokens.Unauthorized, match="more than 29 days away"):
        tokens.verify(KEY, token, now, max_days=29)
    # ten days on, it has 20 days left: within a 29-day cap again
    assert tokens.verify(KEY, token, now + timedelta(days=10), max_days=29).tenant == "acme"


def test_a_series_is_whole_windows_at_most_400_of_them():
    q = series.parse({"from": "2026-09-01T00:00:00Z", "to": "2026-10-01T00:00:00Z"}, NOW, NOW)
    assert (q.window, q.group_by, len(q.starts())) == ("day", "function", 30)
    # 400 hours fit; 401 do not, and the answer names the field
    series.parse({"from": "2026-09-01T00:00:00Z", "to": "2026-09-17T16:00:00Z",
                  "window": "hour"}, NOW, NOW)
    for query, field in [
        ({"from": "2026-09-01T00:00:00Z", "to": "2026-09-17T17:00:00Z", "window": "hour"}, "to:"),
        ({"from": "2026-09-01T00:30:00Z", "window": "hour"}, "from:"),
        ({"from": "2026-09-01"}, "from:"),  # no offset
        ({"from": "yesterday"}, "from:"),
        ({"window": "week"}, "window:"),
        ({"group_by": "region"}, "group_by:"),
        ({"from": "2026-09-02T00:00:00Z", "to": "2026-09-01T00:00:00Z"}, "to:"),
    ]:
        with pytest.raises(RequestError) as bad:
            series.parse(query, NOW, NOW)
        assert bad.value.status == 400 and bad.value.reason.startswith(field), bad.value.reason
