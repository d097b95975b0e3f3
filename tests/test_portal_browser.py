"""The portal page in a real browser: headless Chromium (Debian's chromium and
chromium-driver) driven by selenium through the local gateway, as a tenant opening the
link it was given, on the portal's own origin (http://localhost:<port>, the Ingress
stand-in) while the gateway is http://127.0.0.1:<port>: two origins, as in production.
Screenshots land in var/screenshots/ (docs/portal.md shows copies)."""
from __future__ import annotations

import base64
import os
import shutil
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import urlencode

import psycopg
import pytest
from babel.numbers import format_currency

from chargeback.capacity import store as capacity_store
from chargeback.capacity.holdings import Reading, Sample, Tenant
from chargeback.core import db
from chargeback.core import tokens
from chargeback.core import tokens as links

from .billing_helpers import GiB, NS, event, send, settings_for
from .conftest import PORTAL_KEY, ROOT
from .invoices import finalized_invoice
from .portal_helpers import SHIPPED_BOOK, reject, token_for

pytestmark = pytest.mark.browser
SHOTS = ROOT / "var" / "screenshots"


def _chrome(request, *extra):
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        reason = ("Chromium is not installed: apt-get install -y chromium chromium-driver, "
                  "then scripts/test --browser")
        if request.config.getoption("--browser") or os.environ.get("REQUIRE_BROWSER"):
            pytest.fail(reason + " (required here: --browser or REQUIRE_BROWSER, as .ci/run)")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900", "--lang=de-DE"):
        options.add_argument(flag)
    for flag in extra:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=options)


@pytest.fixture
def chrome(request):
    driver = _chrome(request)
    yield driver
    driver.quit()


@pytest.fixture
def chrome_tls(request):
    """Chromium that accepts the test's self-signed certificate for localhost."""
    driver = _chrome(request, "--ignore-certificate-errors")
    yield driver
    driver.quit()


@pytest.fixture
def busy_october(database_url, tmp_path):
    """A month a tenant would look at: four functions on every day of October 2026
    (more on weekdays), a spot node and a load balancer every 6 hours, one rejected
    event, September's invoice; the tenant reads German."""
    s = settings_for(database_url, tmp_path, book=SHIPPED_BOOK)
    finalized_invoice(database_url, namespace="acme", locale="de_DE")
    functions = {"resize": (40, GiB), "thumbnail": (12, GiB // 2), "ocr": (90, 2 * GiB),
                 "webhook": (1, GiB // 8)}
    events = []
    for day in range(1, 29):
        for i, (fn, (seconds, memory)) in enumerate(functions.items()):
            for k in range(1 + (day * (i + 1)) % 4):
                events.append(event("acme", f"2026-10-{day:02d}T{8 + k:02d}:00:00Z",
                                    seconds * NS * (1 + day % 3), memory, fn))
    send(s, events)
    reading = Reading(tenants=(Tenant("acme"),),
                      samples=(Sample("acme", "node_hours", "e2-standard-8", True, Decimal(1)),
                               Sample("acme", "loadbalancer_hours", "", False, Decimal(1))),
                      dedicated_nodes=0, not_ready_nodes=0, warnings=())
    start = datetime(2026, 10, 1, tzinfo=timezone.utc)
    for h in range(0, 28 * 24 + 1, 6):
        with db.transaction(s) as conn:
            capacity_store.record_tick(conn, start + timedelta(hours=h), reading,
                                       max_gap_seconds=6 * 3600)
    reject(s, "acme", {**event("acme", "2026-10-12T00:00:00Z", -1), "function_name": "Bad_Fn"})
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE openfaas_metering.tenants SET locale_override = 'de_DE',"
                      " display_name_override = 'Acme Bildverarbeitung <GmbH>'"
                      " WHERE namespace = 'acme'")
    return s


def _requests(driver) -> list[str]:
    import json
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _shoot(driver, name: str) -> None:
    """The whole page, not only the viewport (DevTools' captureBeyondViewport)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = driver.execute_cdp_cmd("Page.captureScreenshot",
                                  {"format": "png", "captureBeyondViewport": True})
    (SHOTS / name).write_bytes(base64.b64decode(shot["data"]))


def test_a_tenant_opens_its_link_and_sees_the_apis_figures_charts_and_invoices(
        chrome, portal, busy_october):
    p = portal()
    token = token_for("acme")
    api = p.get("/api/v1/usage/current", token, period="2026-10").json()
    docs = p.get("/api/v1/invoices", token).json()["data"]
    chrome.get(links.page_url(p.origin, token, "2026-10"))  # /?period=2026-10#token=…
    # the page's script posted the fragment's token to /signin: it is in the cookie now
    _wait(chrome, lambda d: d.find_elements("id", "total"))
    assert "token=" not in chrome.current_url
    by_id = chrome.find_element

    # the figures are the API's, formatted for the tenant's locale (de_DE)
    def shown(element_id: str, value: str) -> None:
        element = by_id("id", element_id)
        assert element.get_attribute("data-amount") == value
        # (selenium reads the no-break space babel puts before the symbol as a space)
        assert element.text == format_currency(Decimal(value), "USD", locale="de_DE").replace(
            "\xa0", " ")

    shown("total", api["total"])
    shown("projected", api["projected_total"])
    shown("subtotal", api["subtotal"])
    line_amounts = [e.get_attribute("data-amount")
                    for e in chrome.find_elements("css selector", "#lines tbody td.num[data-amount]")]
    assert line_amounts == [line["amount"] for line in api["lines"]]
    # each line named in German, a meter's name with its SKU and spot flag too
    descriptions = [e.text for e in chrome.find_elements(
        "css selector", "#lines tbody tr td:first-child")]
    assert "Dedizierte Knoten e2-standard-8 (Spot)" in descriptions, descriptions
    assert [e.text for e in chrome.find_elements("css selector", "tr.document td:first-child")] \
        == [d["number"] for d in docs]
    assert "Acme Bildverarbeitung <GmbH>" in by_id("tag name", "h1").text  # text, not markup

    # three charts, drawn: each image decoded with a size, and pygal drew bars in it
    charts = chrome.find_elements("css selector", "img.chart")
    assert len(charts) == 3
    for chart in charts:
        assert chrome.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth", chart) > 0
        svg = base64.b64decode(chart.get_attribute("src").split(",", 1)[1]).decode()
        assert svg.count('class="rect reactive tooltip-trigger"') >= 20

    # nothing came from another origin, and the CSP refused nothing (styles applied)
    origin = p.origin
    requested = _requests(chrome)
    assert requested and all(u.startswith(origin) or u.startswith("data:") for u in requested), \
        requested
    refused = [e["message"] for e in chrome.get_log("browser")
               if "Content Security Policy" in e["message"]]
    assert refused == []
    assert chrome.execute_script(
        "return getComputedStyle(document.querySelector('header')).backgroundColor") \
        == "rgb(17, 24, 39)"
    _shoot(chrome, "portal-1280.png")

    # a phone: 390 CSS px wide, nothing scrolls sideways
    chrome.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
    chrome.refresh()
    width = chrome.execute_script("return document.documentElement.scrollWidth")
    viewport = chrome.execute_script("return document.documentElement.clientWidth")
    assert viewport == 390 and width <= viewport, (width, viewport)
    # every legend entry (HTML under its chart) is on the screen, none cut off, and each
    # chart's numbers are a table under it
    entries = chrome.find_elements("css selector", "ul.legend li")
    assert len(entries) >= 4 and all(e.is_displayed() for e in entries)
    assert max(chrome.execute_script("return arguments[0].getBoundingClientRect().right", e)
               for e in entries) <= 390
    assert len(chrome.find_elements("css selector", "figure.chart details table")) == 3
    _shoot(chrome, "portal-390.png")


def _wait(driver, condition, timeout_s: float = 20):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout_s).until(condition)


def test_a_link_clicked_on_another_origin_opens_the_page_and_that_origin_reads_nothing(
        chrome, portal, busy_october, database_url, tmp_path, caplog):
    with psycopg.connect(database_url) as conn:
        [number] = conn.execute("SELECT number FROM openfaas_metering.invoices"
                                " WHERE namespace = 'acme'").fetchone()
    p = portal(also=("tenant-page",))
    token = token_for("acme")
    link = links.page_url(p.origin, token, "2026-10")
    assert link == f"{p.origin}/?period=2026-10#token={token}"  # the fragment form
    # tenant B's page on the gateway's origin (127.0.0.1), the portal on localhost: a click
    # there is a cross-site navigation, as from webmail
    other = (f"{p.gateway}/function/tenant-page.tenant-b?"
             + urlencode({"link": link, "portal": p.origin, "number": number}))
    chrome.get(other)
    _wait(chrome, lambda d: d.title == "done")
    chrome.find_element("id", "link").click()
    _wait(chrome, lambda d: d.current_url.startswith(p.origin)
          and d.find_elements("id", "total"))
    assert "token=" not in chrome.current_url
    assert "Acme Bildverarbeitung" in chrome.find_element("tag name", "h1").text
    # no server saw the token in a URL: not in any address Chromium sent to the portal's
    # origin (DevTools gives it without the fragment, as it goes on the wire), so neither
    # of-watchdog's request log (it logs each RequestURI) nor an Ingress's can hold it;
    # the page's script posted it in a body. Nor in the stand-ins' or function's logs.
    sent = [u for u in _requests(chrome) if u.startswith(p.origin)]
    assert not [u for u in sent if token in u], sent
    assert f"{p.origin}/?period=2026-10" in sent and f"{p.origin}/signin?period=2026-10" \
        in sent, sent
    logged = [r.getMessage() for r in caplog.records
              if "tenant-portal" in r.getMessage() or "/signin" in r.getMessage()]
    assert logged and not [line for line in logged if token in line], logged
    for log in tmp_path.glob("tenant-portal*.log"):
        assert token not in log.read_text(errors="replace"), log
    chrome.refresh()  # the Lax cookie holds on a reload too
    assert chrome.find_elements("id", "total")
    # back on B's page, now that the customer's browser holds a portal session: B's
    # script reads nothing of acme, on the gateway's origin or the portal's
    chrome.get(other)
    _wait(chrome, lambda d: d.title == "done")
    out = chrome.find_element("id", "out").text.splitlines()
    assert len(out) == 10, out
    for line in out:
        probe, answer = line.split(" => ", 1)
        assert number not in answer and "Month to date" not in answer and "%PDF" not in answer
        if probe.startswith("portal"):
            assert answer.startswith("failed"), line  # CORS, and CORP for no-cors
        else:  # the gateway's origin: the API wants a Bearer token, the page is elsewhere
            assert answer.startswith(("basic 401 ", "basic 421 ")), line


def test_behind_https_the_cookie_is_secure_and_host_bound(chrome_tls, portal, busy_october,
                                                        tmp_path):
    import subprocess
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    p = portal(portal_tls=(cert, key))
    assert p.origin.startswith("https://localhost:")
    chrome_tls.get(links.page_url(p.origin, token_for("acme"), "2026-10"))
    _wait(chrome_tls, lambda d: d.find_elements("id", "total"))
    [cookie] = chrome_tls.get_cookies()
    assert (cookie["name"], cookie["secure"], cookie["httpOnly"], cookie["sameSite"],
            cookie["path"]) == ("__Host-portal", True, True, "Lax", "/"), cookie


def test_an_expired_link_offers_a_new_one_and_the_mailed_link_opens_the_page(
        chrome, portal, busy_october, smtp, database_url):
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE openfaas_metering.tenants SET email_override = "
                     "'billing@acme.example' WHERE namespace = 'acme'")
    p = portal(SMTP_URL=smtp.url)
    now = datetime.now(timezone.utc)
    expired = tokens.issue(PORTAL_KEY, "acme", now - timedelta(days=10), timedelta(days=1))
    chrome.get(links.page_url(p.origin, expired))
    _wait(chrome, lambda d: d.find_elements("id", "new-link"))  # after the script's POST
    # acme reads German: the refusal page is in its language
    assert chrome.find_element("tag name", "h1").text == "Dieser Link ist abgelaufen"
    said = chrome.find_element("id", "refusal").text
    assert "Der geöffnete Link ist nicht mehr gültig." in said and "Neuen Link senden" in said
    _shoot(chrome, "portal-expired-1280.png")
    chrome.find_element("id", "new-link").click()
    _wait(chrome, lambda d: d.find_elements("id", "sent"))
    [mail] = smtp.received
    assert mail.message["To"] == "billing@acme.example"
    fresh = next(w for w in mail.message.get_content().split() if "#token=" in w)
    chrome.get(fresh)
    _wait(chrome, lambda d: d.find_elements("id", "total"))


def test_a_fragment_link_for_another_tenant_asks_first_and_the_choice_switches(
        chrome, portal, busy_october):
    p = portal()
    chrome.get(links.page_url(p.origin, token_for("acme"), "2026-10"))
    _wait(chrome, lambda d: d.find_elements("id", "total"))
    # globex's link, opened in the same browser (another site may have sent it): the
    # script posts it from the portal's own page, and the page asks before replacing acme
    chrome.get(links.page_url(p.origin, token_for("globex")))
    _wait(chrome, lambda d: d.find_elements("id", "switch"))
    assert "token=" not in chrome.current_url
    [cookie] = chrome.get_cookies()
    assert links.verify(PORTAL_KEY, cookie["value"],
                        datetime.now(timezone.utc)).tenant == "acme"  # kept
    chrome.find_element("id", "switch").click()  # "Open globex instead": a same-origin POST
    _wait(chrome, lambda d: not d.find_elements("id", "switch"))
    [cookie] = chrome.get_cookies()
    assert links.verify(PORTAL_KEY, cookie["value"],
                        datetime.now(timezone.utc)).tenant == "globex"


def test_without_javascript_a_fragment_link_says_in_one_line_what_to_do(chrome, portal,
                                                                         busy_october):
    chrome.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    p = portal()
    chrome.get(links.page_url(p.origin, token_for("acme")))
    # acme's language is not known without a session: the default locale's words
    assert chrome.find_element("id", "noscript").text == (
        "Your link signs you in with a small script on this page: allow JavaScript for "
        "this site, then open the link again.")
    assert chrome.get_cookies() == []  # nothing signed in, and nothing sent the token
