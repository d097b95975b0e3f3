"""The portal page in a real browser: headless Chromium (Debian's chromium and
chromium-driver) driven by selenium through the local gateway, as a tenant opening the
link it was given. Screenshots land in var/screenshots/ (docs/functions/tenant-portal.md shows copies)."""
from __future__ import annotations

import base64
import shutil
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import urlsplit

import psycopg
import pytest
from babel.numbers import format_currency

from chargeback.capacity import store as capacity_store
from chargeback.capacity.holdings import Reading, Sample, Tenant
from chargeback.core import db
from chargeback.core import tokens as links

from .billing_helpers import GiB, NS, event, send, settings_for
from .conftest import ROOT
from .invoices import finalized_invoice
from .portal_helpers import SHIPPED_BOOK, reject, token_for

pytestmark = pytest.mark.browser
SHOTS = ROOT / "var" / "screenshots"


@pytest.fixture
def chrome(request):
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        reason = ("Chromium is not installed: apt-get install -y chromium chromium-driver, "
                  "then scripts/test --browser")
        if request.config.getoption("--browser"):
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900", "--lang=de-DE"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
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
    chrome.get(links.page_url(p.url, token, "2026-10"))
    assert "token=" not in chrome.current_url  # the link's token went into the cookie
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
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(p.url))
    requested = _requests(chrome)
    assert requested and all(u.startswith(origin) or u.startswith("data:") for u in requested), \
        requested
    refused = [e["message"] for e in chrome.get_log("browser")
               if "Content Security Policy" in e["message"]]
    assert refused == []
    assert chrome.execute_script(
        "return getComputedStyle(document.querySelector('header')).backgroundColor") \
        == "rgb(17, 24, 39)"
    _shoot(chrome, "portal-desktop.png")

    # a phone: 360 CSS px wide, nothing scrolls sideways
    chrome.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 360, "height": 780, "deviceScaleFactor": 2, "mobile": True})
    chrome.refresh()
    width = chrome.execute_script("return document.documentElement.scrollWidth")
    viewport = chrome.execute_script("return document.documentElement.clientWidth")
    assert viewport == 360 and width <= viewport, (width, viewport)
    _shoot(chrome, "portal-phone.png")
