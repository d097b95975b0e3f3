"""tenant-portal end to end: the function of stack.yml behind the local gateway, real
tokens, a real database filled through the real ingest and tick store, real SMTP."""
from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest
import requests
from devstack.pg import free_port

from chargeback.billing import month_close
from chargeback.capacity import store as capacity_store
from chargeback.capacity.holdings import Reading, Sample, Tenant
from chargeback.core import db
from chargeback.core.settings import load
from chargeback.documents import rendered as documents
from chargeback.core import tokens

from .billing_helpers import GiB, NS, event, send, settings_for, ticks
from .conftest import ADMIN, ADMIN_TOKEN, PORTAL_KEY, ROOT
from .portal_helpers import SHIPPED_BOOK, reject, token_for
from .invoices import HOSTILE_NAME, MAIL_ENV, RecordingSmtp, finalized_invoice, start_smtp

OCT = {"from": "2026-10-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"}


@pytest.fixture
def october(database_url, tmp_path):
    """acme's October: 2 x 100 s of resize at 1 GiB on the 10th (200 GB-s), 50 s of
    thumbnail at 512 MiB on the 11th (25 GB-s), one load balancer for 4 hours (2 on the
    15th, 2 on the 16th), one rejected event; September's invoices for acme and globex."""
    s = settings_for(database_url, tmp_path, book=SHIPPED_BOOK)
    acme_invoice = finalized_invoice(database_url, namespace="acme")  # hostile bill-to name
    globex_invoice = finalized_invoice(database_url, namespace="globex")
    send(s, [event("acme", "2026-10-10T10:00:00Z", 100 * NS, GiB, "resize"),
             event("acme", "2026-10-10T10:30:00Z", 100 * NS, GiB, "resize"),
             event("acme", "2026-10-11T08:00:00Z", 50 * NS, GiB // 2, "thumbnail"),
             event("globex", "2026-10-10T10:00:00Z", 999 * NS)])
    slots = [datetime(2026, 10, 15, 22, tzinfo=timezone.utc) + timedelta(hours=h)
             for h in range(5)]  # the first tick is the baseline: 4 billed hours
    ticks(s, "acme", [("loadbalancer_hours", "", False, "1")], slots)
    reject(s, "acme", {**event("acme", "2026-10-12T00:00:00Z", -1),
                        "function_name": '<script>alert("fn")</script>'})
    with psycopg.connect(database_url) as conn:
        # the operator's display name for acme carries markup too
        conn.execute("UPDATE openfaas_metering.tenants SET display_name_override = %s"
                     " WHERE namespace = 'acme'", (HOSTILE_NAME,))
        numbers = dict(conn.execute("SELECT invoice_id::text, number FROM "
                                    "openfaas_metering.invoices").fetchall())
    return s, numbers[acme_invoice], numbers[globex_invoice], acme_invoice


def test_a_tenant_reads_its_own_month_series_documents_and_rejected_events(portal, october):
    s, acme_no, globex_no, _ = october
    p = portal()
    t = token_for("acme")
    # the month priced by the shipped book's standard plan: 225 GB-s and 3 calls are inside
    # the allowances (400,000 GB-s, 1,000,000 calls), the load balancer's 4 hours at
    # 0.0225/h are 0.09; no base fee, no commitment, tax 0 %
    r = p.get("/api/v1/usage/current", t, period="2026-10")
    assert r.status_code == 200 and r.headers["Cache-Control"] == "private, no-store"
    month = r.json()
    assert (month["tenant"], month["period"], month["currency"]) == ("acme", "2026-10", "USD")
    by_meter = {line["meter"]: Decimal(line["quantity"]) for line in month["lines"]}
    assert by_meter == {"gb_seconds": 225, "invocations": 3, "loadbalancer_hours": 4}
    assert (month["subtotal"], month["tax"], month["total"]) == ("0.09", "0.00", "0.09")
    assert Decimal(month["projected_total"]) == Decimal(month["total"])  # the month is over

    daily = p.get("/api/v1/usage", t, **OCT).json()["data"]
    gb = {(d["window_start"][:10], d["function"]): Decimal(d["quantity"])
          for d in daily if d["meter"] == "gb_seconds"}
    assert gb == {("2026-10-10", "resize"): 200, ("2026-10-11", "thumbnail"): 25}
    hourly = p.get("/api/v1/usage", t, window="hour", group_by="meter",
                   **{"from": "2026-10-10T00:00:00Z", "to": "2026-10-11T00:00:00Z"}).json()
    assert [(d["window_start"], d["meter"], d["quantity"]) for d in hourly["data"]] == [
        ("2026-10-10T10:00:00+00:00", "gb_seconds", "200"),
        ("2026-10-10T10:00:00+00:00", "invocations", "2")]
    by_sku = p.get("/api/v1/usage", t, group_by="sku", **OCT).json()["data"]
    assert [(d["window_start"][:10], d["meter"], d["quantity"]) for d in by_sku
            if d["meter"] == "loadbalancer_hours"] == [("2026-10-15", "loadbalancer_hours", "2"),
                                                       ("2026-10-16", "loadbalancer_hours", "2")]
    too_long = p.get("/api/v1/usage", t, window="hour", **OCT)
    assert too_long.status_code == 400 and too_long.json()["error"].startswith("to: 744 hour")

    docs = p.get("/api/v1/invoices", t).json()["data"]
    assert [d["number"] for d in docs] == [acme_no]
    assert p.get(f"/api/v1/invoices/{acme_no}", t).json()["total"] == "279.83"
    pdf = p.get(f"/api/v1/invoices/{acme_no}.pdf", t)
    assert pdf.headers["Content-Type"] == "application/pdf" and pdf.content[:5] == b"%PDF-"
    assert acme_no in p.get(f"/api/v1/invoices/{acme_no}.csv", t).text
    html = p.get(f"/api/v1/invoices/{acme_no}.html", t)
    assert "<script>" not in html.text and "&lt;script&gt;" in html.text
    for path in (f"/api/v1/invoices/{globex_no}", f"/api/v1/invoices/{globex_no}.pdf",
                 "/api/v1/invoices/INV-2099-999999.html"):
        missing = p.get(path, t)
        assert missing.status_code == 404 and globex_no not in missing.text.replace(
            path.rsplit("/", 1)[1].split(".")[0], "")

    # a tenant's token never reads another tenant's series, even when it names one
    other = p.get("/api/v1/usage", t, tenant="globex", **OCT)
    assert other.status_code == 404 and "data" not in other.json()
    [bad] = p.get("/api/v1/rejected", t, limit="5").json()["data"]
    assert (bad["delivery_id"], bad["index"]) == ("delivery-bad-1", 0)
    assert bad["reason"].startswith("function_name")
    assert p.get("/api/v1/rejected", t, limit="0").json()["error"].startswith("limit:")
    assert p.get("/api/v1/rejected", token_for("globex")).json()["data"] == []


def test_the_page_keeps_the_link_token_in_a_lax_host_cookie_and_escapes_the_tenant(
        portal, october):
    _, acme_no, _, _ = october
    p = portal()
    browser = requests.Session()
    link = browser.get(f"{p.origin}/", params={"token": token_for("acme"), "period": "2026-10"},
                       timeout=30, allow_redirects=False)
    assert link.status_code == 303 and link.headers["Location"] == "/?period=2026-10"
    cookie = link.headers["Set-Cookie"]
    # Lax: the first request after a click in webmail carries it; http here: not Secure
    assert cookie.startswith("portal=") and "Path=/;" in cookie and "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie and "Secure" not in cookie
    page = p.page("/", session=browser, period="2026-10")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "private, no-store"
    csp = page.headers["Content-Security-Policy"]
    # one script runs: signin.js (a link's #token= to /signin), admitted by its hash
    script = (ROOT / "chargeback/portal/templates/signin.js").read_text()
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}';" in csp
    assert "unsafe-inline" not in csp and "http" not in csp
    # the tenant's display name carries a script: shown as text, never as markup; the
    # page's one <script> is signin.js
    assert page.text.count("<script>") == 1 and f"<script>{script}</script>" in page.text
    assert "&lt;script&gt;alert(\\&#34;fn" in page.text
    assert "Zoë &amp; Søn &lt;script&gt;" in page.text
    assert f'href="/invoices/{acme_no}.pdf"' in page.text
    assert page.text.count('<img class="chart"') == 3 and "delivery-bad-1" in page.text
    # the cookie opens the page's downloads on the portal's origin ...
    assert p.page(f"/invoices/{acme_no}.csv", session=browser).status_code == 200
    # ... and never the JSON API, on any origin (a Bearer header only)
    stolen = {"Cookie": f"portal={browser.cookies['portal']}"}
    for url in (f"{p.origin}/api/v1/invoices", f"{p.url}/api/v1/invoices"):
        refused = requests.get(url, headers=stolen, timeout=30)
        assert refused.status_code == 401 and acme_no not in refused.text


def test_without_a_valid_token_nothing_is_read(portal, october):
    _, acme_no, _, _ = october
    p = portal()
    now = datetime.now(timezone.utc)
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    claims = base64.urlsafe_b64encode(json.dumps(
        {"sub": "acme", "exp": int(now.timestamp()) + 3600}).encode()).rstrip(b"=").decode()
    refused = {
        "no token": None,
        "bad signature": token_for("acme")[:-4] + "AAAA",
        "alg none": f"{header}.{claims}.",
        "wrong key": token_for("acme", key="another-key-that-is-long-enough-to-sign"),
        "expired": tokens.issue(PORTAL_KEY, "acme", now - timedelta(days=2), timedelta(days=1)),
        "admin token for no tenant": None,
    }
    for why, token in refused.items():
        for path in ("/api/v1/usage/current", f"/api/v1/invoices/{acme_no}.pdf"):
            r = p.get(path, token)
            assert r.status_code == 401, (why, path, r.text)
            assert r.headers["Cache-Control"] == "private, no-store"
            assert "279" not in r.text
        if token:  # the page: a page that says why, never the figures
            r = requests.get(f"{p.origin}/", params={"token": token}, timeout=30)
            assert r.status_code == 401 and "279" not in r.text, (why, r.text)
            assert r.headers["Content-Type"].startswith("text/html")
    # the operator reads any tenant, naming it
    assert p.get("/api/v1/invoices", headers=ADMIN, tenant="acme").json()["data"][0][
        "number"] == acme_no
    assert p.get("/api/v1/invoices", headers=ADMIN).json()["error"].startswith("tenant:")
    assert p.get("/api/v1/usage/current", f"{ADMIN_TOKEN}x", tenant="acme").status_code == 401


def test_an_invoice_link_opens_that_invoice_alone(portal, october, database_url):
    s, acme_no, _, _ = october
    with psycopg.connect(database_url) as conn:  # acme's August invoice, another number
        (second_no,) = conn.execute("""
            INSERT INTO openfaas_metering.invoices
                   (namespace, period, period_start, period_end, billing_timezone, status, plan,
                    currency, bill_to_name, bill_to_email, locale, subtotal, tax_rate, tax,
                    total, number, number_year, number_seq, issued_at, inputs_sha256,
                    lines_sha256)
            SELECT namespace, '2026-08', period_start - interval '1 month',
                   period_end - interval '1 month', billing_timezone, status, plan, currency,
                   bill_to_name, bill_to_email, locale, subtotal, tax_rate, tax, total,
                   'INV-2026-000900', 2026, 900, issued_at - interval '1 month',
                   inputs_sha256, lines_sha256
              FROM openfaas_metering.invoices WHERE number = %s
            RETURNING number""", (acme_no,)).fetchone()
    p = portal()
    t = token_for("acme", days=120, invoice=acme_no)
    assert p.get(f"/api/v1/invoices/{acme_no}.pdf", t).status_code == 200
    assert [d["number"] for d in p.get("/api/v1/invoices", t).json()["data"]] == [acme_no]
    assert p.get(f"/api/v1/invoices/{second_no}.pdf", t).status_code == 404
    assert p.get("/api/v1/usage/current", t).status_code == 403


def test_usage_current_just_after_a_month_ended_equals_its_invoice_on_every_shipped_plan(
        portal, database_url, tmp_path):
    s = settings_for(database_url, tmp_path, book=SHIPPED_BOOK)
    slots = [datetime(2026, 9, 1, tzinfo=timezone.utc) + timedelta(hours=h)
             for h in range(0, 30 * 24 + 1, 6)]  # every 6 h through the month's end
    # a plan each; usage past the allowances (400,000 GB-s) so the tiers price something
    big = 300_000 * NS
    holdings = {"std": ("standard", [("node_hours", "e2-standard-8", True, "1")]),
                "faas": ("functions", [("loadbalancer_hours", "", False, "2")]),
                "gpu": ("gpu-dedicated", [("gpu_hours", "NVIDIA-H100-80GB-HBM3", False, "8"),
                                          ("node_hours", "bm.gpu.h100.8", False, "1")]),
                "eu": ("spot", [("node_hours", "c6i.8xlarge", True, "3")])}
    reading = Reading(
        tenants=tuple(Tenant(ns, plan=plan) for ns, (plan, _) in holdings.items()),
        samples=tuple(Sample(ns, m, sku, spot, Decimal(units)) for ns, (_, held)
                      in holdings.items() for m, sku, spot, units in held),
        dedicated_nodes=0, not_ready_nodes=0, warnings=())
    for slot in slots:  # every tenant in each tick, as meter-capacity reads the cluster
        with db.transaction(s) as conn:
            capacity_store.record_tick(conn, slot, reading, max_gap_seconds=6 * 3600)
    send(s, [event(ns, f"2026-09-{day:02d}T10:00:00Z", big, 2 * GiB, f"fn-{day % 3}")
             for ns in ("std", "faas", "gpu", "eu") for day in (3, 17, 29)])
    p = portal()
    asked = {}
    for ns in ("std", "faas", "gpu", "eu"):
        month = p.get("/api/v1/usage/current", headers=ADMIN, tenant=ns, period="2026-09").json()
        asked[ns] = (month["currency"], Decimal(month["subtotal"]), Decimal(month["tax"]),
                     Decimal(month["total"]))
    month_close.run(s, month_close.Options(period="2026-09"),
                    datetime(2026, 10, 1, 6, 0, 1, tzinfo=timezone.utc))
    with psycopg.connect(database_url) as conn:
        invoiced = {ns: (cur, sub, tax, total) for ns, cur, sub, tax, total in conn.execute(
            "SELECT namespace, currency, subtotal, tax, total FROM openfaas_metering.invoices"
            " WHERE period = '2026-09' AND status <> 'draft'")}
        plans = dict(conn.execute("SELECT namespace, plan FROM openfaas_metering.invoices"))
    assert set(plans.values()) == {"standard", "functions", "gpu-dedicated", "spot"}
    assert asked == invoiced
    # the commitment plans bill at least their commitment: the estimate saw it too
    assert asked["gpu"][1] >= Decimal("25000.00") and asked["eu"][0] == "EUR"


def test_an_accepted_delivery_is_visible_in_the_next_usage_current(
        portal, database_url, tmp_path):
    s = settings_for(database_url, tmp_path, book=SHIPPED_BOOK)
    p = portal()
    t = token_for("live")

    def used():
        lines = p.get("/api/v1/usage/current", t).json()["lines"]
        return {line["meter"]: Decimal(line["quantity"]) for line in lines}

    assert used() == {}
    started = (datetime.now(timezone.utc) - timedelta(seconds=30)).isoformat()
    send(s, [event("live", started.replace("+00:00", "Z"), 3 * NS, GiB)])
    # 3 s at 1 GiB = 3 GB-s, one invocation, the moment the delivery committed
    assert used() == {"gb_seconds": 3, "invocations": 1}


def test_every_invoice_email_links_to_its_page_with_a_token_for_it_alone(
        portal, october, database_url):
    _, acme_no, globex_no, acme_invoice = october
    smtp = RecordingSmtp()
    controller = start_smtp(smtp, free_port())
    try:
        port = free_port()
        p = portal(also=("email-invoice",), port=port,
                   SMTP_URL=f"smtp://127.0.0.1:{controller.port}", **MAIL_ENV)
        sent = requests.post(f"http://127.0.0.1:{port}/function/email-invoice.openfaas-system",
                             json={"invoice_id": acme_invoice}, timeout=30)
        assert sent.json()["status"] == "sent", sent.text
    finally:
        controller.stop()
    [mail] = smtp.received
    message = mail.message
    text = message.get_body(("plain",)).get_content()
    [link] = re.findall(r"http://\S+", text)
    # the portal's own origin, the token in the fragment (a browser never sends it)
    assert link.startswith(f"{p.origin}/#token=")
    claims = tokens.verify(PORTAL_KEY, link.split("#token=")[1], datetime.now(timezone.utc))
    assert (claims.tenant, claims.invoice) == ("acme", acme_no)
    # valid 120 days from the invoice's issue (2026-10-01T01:00:05Z)
    assert claims.expires_at == datetime(2027, 1, 29, 1, 0, 5, tzinfo=timezone.utc)
    assert link in message.get_body(("html",)).get_content()
    # what a browser sends: the address without the fragment (the page, no session yet),
    # then the page's script posts the token to /signin, and the 303 opens the page
    browser = requests.Session()
    first = browser.get(link, timeout=30)
    assert first.status_code == 401 and "/signin" in first.text
    assert first.request.path_url == "/"  # what went on the wire: no fragment, no token
    opened = browser.post(f"{p.origin}/signin", data={"token": link.split("#token=")[1]},
                          headers={"Sec-Fetch-Site": "same-origin"}, timeout=30)
    assert opened.status_code == 200 and acme_no in opened.text and "Month to date" not in opened.text
    pdf = [part for part in message.walk() if part.get_content_type() == "application/pdf"][0]
    served = p.page(f"/invoices/{acme_no}.pdf", session=browser)
    assert served.content == pdf.get_payload(decode=True)  # the bytes the e-mail carried
    assert p.page(f"/invoices/{globex_no}.pdf", session=browser).status_code == 404
    # without PORTAL_URL the same invoice carries no link
    plain = documents.rerender(load({"DATABASE_URL": database_url, **MAIL_ENV}), acme_invoice)
    assert "token=" not in plain.text and "token=" not in plain.html


def test_the_portal_renders_invoices_as_email_invoice_does(database_url, secrets_dir):
    # the portal serves an invoice's PDF, HTML and attachments by rendering it again; a
    # tenant must get the bytes its e-mail carried. Each function renders with its own
    # environment in stack.yml (as deployed): the same invoice, rendered with each, must
    # give the same bytes, whatever setting a rendering reads
    from devstack import stack as stackfile
    stack = stackfile.load(ROOT / "stack.yml")
    invoice_id = finalized_invoice(database_url, namespace="acme")
    mail, page = (documents.rerender(load({**stack.functions[name].environment,
                                          "DATABASE_URL": database_url,
                                          "SECRETS_DIR": str(secrets_dir)}), invoice_id)
                  for name in ("email-invoice", "tenant-portal"))
    assert page.pdf[:5] == b"%PDF-" and page.pdf == mail.pdf
    assert page.html == mail.html and page.text == mail.text
    assert [(a.filename, a.data) for a in page.attachments] == [
        (a.filename, a.data) for a in mail.attachments]
    assert "portal-signing-key" in stack.functions["tenant-portal"].secrets


def test_a_tenant_sees_its_budget_the_share_used_and_its_crossings_and_no_one_elses(
        portal, october, database_url):
    from chargeback.budgets import evaluate
    s, _, _, _ = october
    # acme's October is 0.09 USD before tax (see the first test); taxed at 19 % here,
    # 0.0171 -> 0.02, a total of 0.11. Budget 0.20: the share is the total's, 0.11 / 0.20
    # = 55.00 % (the subtotal's would be 45 %), so 50 % (0.10) is crossed, 80 % is not
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE openfaas_metering.tenants SET budget_override = 0.20,"
                     " tax_rate_override = 0.19 WHERE namespace = 'acme'")
    assert evaluate.fire_crossings(s, datetime(2026, 10, 31, 12, tzinfo=timezone.utc)
                                   )["crossed"] == 1
    p = portal()
    t = token_for("acme")
    r = p.get("/api/v1/budget", t, period="2026-10")
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["tenant"], got["period"], got["currency"]) == ("acme", "2026-10", "USD")
    assert (Decimal(got["budget"]), got["month_to_date"], got["share_used_percent"]) == (
        Decimal("0.20"), "0.11", "55.00")
    [crossing] = got["crossings"]
    assert (crossing["kind"], crossing["threshold_percent"], crossing["month_to_date"],
            crossing["rearmed"]) == ("threshold", 50, "0.11", False)
    assert datetime.fromisoformat(crossing["crossed_at"]) > datetime.now(timezone.utc) - \
        timedelta(minutes=5)
    # the page shows the same
    page = p.page("/", t, period="2026-10").text
    budget = page.split('<section id="budget">', 1)[1].split("</section>", 1)[0]
    assert ">$0.20<" in budget and ">55.00 %<" in budget and "<td>50 %" in budget
    # another tenant never sees it: asking for acme answers 404 as the other routes do,
    # and globex's own budget is none, with no crossing
    other = p.get("/api/v1/budget", token_for("globex"), tenant="acme", period="2026-10")
    assert other.status_code == 404 and "0.20" not in other.text
    own = p.get("/api/v1/budget", token_for("globex"), period="2026-10").json()
    assert (own["tenant"], own["budget"], own["share_used_percent"], own["crossings"]) == (
        "globex", None, None, [])
    globex_page = p.page("/", token_for("globex"), period="2026-10").text
    assert "No monthly budget is set" in globex_page and "$0.20" not in globex_page


def test_a_voided_invoice_shows_voided_by_its_credit_note_beside_its_reissue(
        portal, database_url, tmp_path):
    from chargeback.billing import adjustments
    from .billing_helpers import BOOK, Recorder
    s = settings_for(database_url, tmp_path, book=BOOK)
    # 1,000 GB-s at 0.001 (1.00) and one call inside the 10-call allowance: INV-...1, 1.00
    send(s, [event("acme", "2026-09-10T10:00:00Z", 1000 * NS, GiB)])
    month_close.run(s, month_close.parse_options(b'{"period": "2026-09"}'),
                    datetime(2026, 10, 2, tzinfo=timezone.utc))
    answer = adjustments.apply(s, adjustments.parse(json.dumps(
        {"void": "INV-2026-000001", "reason": "duplicated_charge", "reissue": True}).encode()),
        Recorder())
    assert (answer["credit_note"]["number"], answer["reissue"]["number"]) == (
        "CN-2026-000001", "INV-2026-000002")
    p = portal()
    t = token_for("acme")
    docs = {d["number"]: d for d in p.get("/api/v1/invoices", t).json()["data"]}
    assert {n: (d["kind"], d["status"], d["voided_by"], d["corrects"], d["replaces"], d["total"])
            for n, d in docs.items()} == {
        "INV-2026-000001": ("invoice", "voided", "CN-2026-000001", None, None, "1.00"),
        "CN-2026-000001": ("credit_note", "issued", None, "INV-2026-000001", None, "-1.00"),
        "INV-2026-000002": ("invoice", "issued", None, None, "INV-2026-000001", "1.00")}
    invoices = p.page("/", t).text.split('<section id="invoices">', 1)[1].split("</section>")[0]
    assert "voided by CN-2026-000001" in invoices
    assert "credit note for INV-2026-000001" in invoices
    assert "replaces INV-2026-000001" in invoices


@pytest.fixture
def german_acme(portal, october, database_url):
    """The portal, and a session signed in as acme, whose locale the operator set to de_DE."""
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE openfaas_metering.tenants SET locale_override = 'de_DE'"
                     " WHERE namespace = 'acme'")
    p = portal()
    return p, p.sign_in(token_for("acme"))


def test_a_german_tenants_page_and_refusal_pages_are_in_german_with_lang_de(german_acme,
                                                                             october):
    _, acme_no, _, _ = october
    p, browser = german_acme
    page = p.page("/", session=browser, period="2026-10")
    assert page.status_code == 200 and '<html lang="de">' in page.text
    # the German catalog's words (chargeback/mail/locales/de), none of the English ones
    for german in ("Monat bis heute", "Bisher gesamt", "Zwischensumme", "Tägliche Nutzung",
                   "Rechnungen", "Abgelehnte Ereignisse", f'aria-label="{acme_no}: Positionen'):
        assert german in page.text, german
    for english in ("Month to date", "Total so far", "Daily usage", "Rejected events"):
        assert english not in page.text, english
    invoice = p.page(f"/invoices/{acme_no}", session=browser)
    assert '<html lang="de">' in invoice.text and "Ihre Rechnung" in invoice.text
    # an expired link names the tenant: its refusal page is German too
    now = datetime.now(timezone.utc)
    expired = tokens.issue(PORTAL_KEY, "acme", now - timedelta(days=10), timedelta(days=1))
    refused = requests.get(f"{p.origin}/", params={"token": expired}, timeout=30)
    assert refused.status_code == 401 and '<html lang="de">' in refused.text
    assert "Dieser Link ist abgelaufen" in refused.text and "Neuen Link senden" in refused.text
    assert "Der geöffnete Link ist nicht mehr gültig." in refused.text
    # the system's one-line reason beside it stays English, and says so to a screen reader
    assert '<p class="muted" lang="en">the token has expired; ask for a new link</p>' \
        in refused.text
    # a signed-in German tenant's 404 and 400 pages: German words, the reason in English
    missing = p.page("/invoices/INV-2099-999999", session=browser)
    assert missing.status_code == 404 and '<html lang="de">' in missing.text
    assert "Für dieses Konto gibt es hier nichts." in missing.text
    assert '<p class="muted" lang="en">no invoice INV-2099-999999</p>' in missing.text
    bad = p.page("/", session=browser, period="2026-13")
    assert bad.status_code == 400 and '<html lang="de">' in bad.text
    assert "Die aufgerufene Adresse versteht das Portal nicht." in bad.text
    # globex has no locale: English, and lang says so
    other = requests.Session()
    other.get(f"{p.origin}/", params={"token": token_for("globex")}, timeout=30)
    english = p.page("/", session=other, period="2026-10")
    assert '<html lang="en">' in english.text and "Month to date" in english.text


def test_the_usage_table_shows_unit_prices_allowances_and_a_total_and_each_chart_its_numbers(
        german_acme):
    p, browser = german_acme
    text = p.page("/", session=browser, period="2026-10").text
    rows = {re.sub(r"<[^>]+>", "|", row).split("|")[2]: re.findall(
        r'<td class="num[^"]*"[^>]*>([^<]*)</td>', row) for row in re.findall(
        r"<tr><td>.*?</tr>", text.split('id="lines"')[1].split("</tbody>")[0])}
    # the shipped book in October: calls 0.0000002 each (all 3 inside the allowance),
    # load balancers 0.0225 an hour (from 16 Sep; no allowance), 4 h = 0.09 USD; GB-s
    # priced by graduated tiers (no single unit price), all 225 inside the allowance
    # descriptions and units from the German catalog; babel's de_DE money: "0,09\xa0$"
    assert rows == {"Funktionsaufrufe": ["3 Aufrufe", "3 Aufrufe", "0,0000002\xa0$", "0,00\xa0$"],
                    "Load Balancer": ["4 LB-Stunden", "—", "0,0225\xa0$", "0,09\xa0$"],
                    "Funktionsrechenzeit": ["225 GB-s", "225 GB-s", "—", "0,00\xa0$"]}
    total = re.search(r'<tr class="total"><th colspan="2">Gesamt</th>.*?'
                      r'<td class="num" id="total-row"[^>]*>([^<]*)</td>', text)
    assert total and total.group(1) == "0,09\xa0$"
    # the invocations chart: 2 calls on the 10th, 1 on the 11th, so its y axis has
    # fractions, written the German way; its table has the same figures by day
    figure = text.split("Aufrufe nach Funktion</figcaption>")[1].split("</figure>")[0]
    svg = base64.b64decode(re.search(r'src="data:image/svg\+xml;base64,([^"]+)"',
                                      figure).group(1)).decode()
    assert ">0,2<" in svg and ">0.2<" not in svg  # pygal steps 0 to 2 by 0.2
    assert '<ul class="legend"><li><span class="swatch c0"></span>resize</li>' in figure
    # the capacity chart names its meters as the invoice does, in German
    capacity = text.split("(Einheitenstunden)</figcaption>")[1].split("</figure>")[0]
    assert '<span class="swatch c0"></span>Load Balancer</li>' in capacity, capacity[-600:]
    table = figure.split("<details>")[1]
    assert "<th>Tag</th>" in table and "<tr><th>10.10.2026</th><td class=\"num\">2</td>" \
        "<td class=\"num\">0</td></tr>" in table
    assert "<tr><th>11.10.2026</th><td class=\"num\">0</td><td class=\"num\">1</td>" in table


def test_a_tenant_sees_what_is_left_to_pay_and_its_balance(portal, database_url, tmp_path):
    from chargeback.billing import payment_requests
    from .billing_helpers import BOOK
    s = settings_for(database_url, tmp_path, book=BOOK)
    # 2,000 GB-s at 0.001 USD, no tax: INV-2026-000001, 2.00
    send(s, [event("acme", "2026-09-10T10:00:00Z", 2000 * NS, GiB)])
    month_close.run(s, month_close.parse_options(b'{"period": "2026-09"}'),
                    datetime(2026, 10, 2, tzinfo=timezone.utc))

    def pay(amount, reference):
        body = json.dumps({"payment": {"invoice": "INV-2026-000001", "amount": amount,
                                       "date": "2026-10-05", "reference": reference}})
        payment_requests.apply(s, *payment_requests.parse(body.encode()),
                               datetime(2026, 10, 5, tzinfo=timezone.utc))

    pay("0.50", "TX-1")
    p = portal()
    t = token_for("acme")
    answer = p.get("/api/v1/invoices", t).json()
    [doc] = answer["data"]
    assert (doc["payment_status"], doc["open"], answer["balance"]) == (
        "partially_paid", "1.50", {})
    invoices = p.page("/", t).text.split('<section id="invoices">', 1)[1].split("</section>")[0]
    assert "Partly paid" in invoices and "$1.50 open" in invoices
    # the invoice's own page: its status and due date (the plan's default 14 days' terms
    # from the day it was issued), what is open
    issued = date.fromisoformat(doc["issued_at"][:10])
    due = issued + timedelta(days=14)
    alone = p.page("/invoices/INV-2026-000001", t).text
    assert f"due {due:%b} {due.day}, {due.year}" in alone, alone
    assert "Partly paid" in alone and "$1.50 open" in alone
    pay("2.00", "TX-2")                  # 0.50 more than is open: the tenant's balance
    answer = p.get("/api/v1/invoices", t).json()
    assert (answer["data"][0]["payment_status"], answer["balance"]) == ("paid", {"USD": "0.50"})
    page = p.page("/", t).text
    assert "Your balance: $0.50" in page
    # a credit the operator grants: its balance and history
    grant = json.dumps({"grant": {"tenant": "acme", "amount": "5.00", "currency": "USD",
                                  "reason": "welcome"}})
    payment_requests.apply(s, *payment_requests.parse(grant.encode()),
                           datetime(2026, 10, 5, tzinfo=timezone.utc))
    credit = p.get("/api/v1/invoices", t).json()["credit"]
    assert credit["balance"] == {"USD": "5.00"}
    assert [(g["amount"], g["reason"], g["remaining"]) for g in credit["grants"]] == [
        ("5.00", "welcome", "5.00")]
    assert "Credit granted to you, left: $5.00" in p.page("/", t).text
