"""POST /signin: where the page's script sends a link's `#token=` (the fragment no
server sees). Through the portal's own origin (the Ingress stand-in) and the local
gateway, real tokens and database: the answers are the legacy `GET /?token=`'s, and
only the portal's own page may post."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from html import unescape

import pytest
import requests

from chargeback.core import tokens

from .conftest import PORTAL_KEY
from .portal_helpers import september_invoices, set_cookie, token_for


@pytest.fixture
def acme(database_url):
    """acme's and globex's September invoices: (acme's number, globex's number)."""
    return september_invoices(database_url)


SAME = {"Sec-Fetch-Site": "same-origin"}


def _post(p, data, headers=SAME, session=None, path="/signin"):
    return (session or requests).post(f"{p.origin}{path}", data=data, headers=headers,
                                      timeout=30, allow_redirects=False)


@pytest.mark.parametrize("headers, said", [
    ({"Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site: 'cross-site'"),
    # the gateway's host, a sibling of the portal's: same-site, and tenants' code runs there
    ({"Sec-Fetch-Site": "same-site"}, "Sec-Fetch-Site: 'same-site'"),
    ({"Origin": "http://127.0.0.1:9"}, "Origin: 'http://127.0.0.1:9' is not http://localhost:"),
    ({}, "Origin: '' is not http://localhost:"),  # neither header: no browser's own page
])
def test_a_post_from_anywhere_but_the_portals_own_page_is_refused_403(portal, acme, headers,
                                                                         said):
    p = portal()
    r = _post(p, {"token": token_for("acme")}, headers)
    assert r.status_code == 403 and set_cookie(r) is None
    # the one-line reason, as the page shows it (escaped: html.unescape reads it back)
    assert said in unescape(r.text) and "sign in from the portal's own page" in \
        unescape(r.text), r.text


def test_a_post_from_the_portals_own_page_opens_the_session(portal, acme):
    p = portal()
    # a browser without Sec-Fetch-Site: its Origin is the portal's
    for headers in (SAME, {"Origin": p.origin}):
        r = _post(p, {"token": token_for("acme")}, headers)
        assert r.status_code == 303 and r.headers["Location"] == "/", r.text
        assert set_cookie(r).startswith("portal=") and "SameSite=Lax" in set_cookie(r)
    # the link's period rides in the query of the form's action (the page's location.search)
    r = requests.post(f"{p.origin}/signin?period=2026-10", data={"token": token_for("acme")},
                      headers=SAME, timeout=30, allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == "/?period=2026-10"
    browser = requests.Session()
    _post(p, {"token": token_for("acme")}, session=browser)
    assert "Month to date" in browser.get(f"{p.origin}/", timeout=30).text
    # no session and no script (JavaScript off): the page says in one line what to do
    bare = requests.get(f"{p.origin}/", timeout=30)
    assert bare.status_code == 401 and '<noscript><p id="noscript">Your link signs you in ' \
        "with a small script on this page: allow JavaScript for this site, then open the " \
        "link again.</p></noscript>" in bare.text
    # GET /signin, or a POST without a token: refused, naming what to do
    assert requests.get(f"{p.origin}/signin", timeout=30).status_code == 405
    empty = _post(p, {})
    assert empty.status_code == 400 and "token: the form carries" in empty.text


def test_a_posted_link_never_replaces_another_tenants_session_unless_chosen(portal, acme):
    acme_no, globex_no = acme
    p = portal()
    browser = p.sign_in(token_for("acme"))
    before = browser.cookies["portal"]
    # another site links to the portal with globex's #token=: the page's script posts it
    # from the portal's own page (same-origin), so the question is what protects acme
    globex = token_for("globex")
    asked = _post(p, {"token": globex}, session=browser)
    assert asked.status_code == 200 and set_cookie(asked) is None
    assert "Another account is open" in asked.text and 'id="switch"' in asked.text
    # the choice is a form that posts the token again: never a URL with the token in it
    assert 'action="/signin"' in asked.text and f'value="{globex}"' in asked.text
    assert f"token={globex}" not in asked.text
    assert browser.cookies["portal"] == before and acme_no in p.page("/", session=browser).text
    chosen = _post(p, {"token": globex, "switch": "1"}, session=browser)
    assert chosen.status_code == 303 and set_cookie(chosen).startswith("portal=")
    assert globex_no in p.page("/", session=browser).text


def test_an_invoice_link_keeps_a_full_session_and_a_bad_link_shows_the_new_link_page(
        portal, acme):
    acme_no, _ = acme
    p = portal(PORTAL_TOKEN_MAX_DAYS="30")
    browser = p.sign_in(token_for("acme"))
    full = browser.cookies["portal"]
    opened = _post(p, {"token": token_for("acme", invoice=acme_no)}, session=browser)
    assert opened.status_code == 303 and set_cookie(opened) is None
    assert opened.headers["Location"] == f"/invoices/{acme_no}"
    assert browser.cookies["portal"] == full
    now = datetime.now(timezone.utc)
    expired = tokens.issue(PORTAL_KEY, "acme", now - timedelta(days=10), timedelta(days=1))
    # 31 days: past PORTAL_TOKEN_MAX_DAYS=30, however well signed
    too_long = token_for("acme", days=31)
    for token, said in ((expired, "the token has expired"),
                        (too_long, "more than 30 days away (PORTAL_TOKEN_MAX_DAYS)")):
        r = _post(p, {"token": token})
        assert r.status_code == 401 and "This link has expired" in r.text, r.text
        assert said in unescape(r.text) and 'action="/new-link"' in r.text and 'id="new-link"' in r.text
