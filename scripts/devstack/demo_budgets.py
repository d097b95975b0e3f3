"""Demo section: the operator gives acme-shop a monthly budget, one signed delivery of
this month's usage crosses it, and evaluate-budgets (called as cron calls it, every
minute) fires each threshold once: a mail in the tenant's locale and a signed webhook.
Then the outbound webhooks the whole demo produced, as the sink wrote them."""
from __future__ import annotations

import email
import json
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from email.policy import default as default_policy
from pathlib import Path

import psycopg
import requests

from .usage_sim import WebhookSender

TENANT = "acme-shop"
BUDGET = "8.00"  # USD, its plan's currency
WAIT_S = 30

_CROSSINGS = """
SELECT kind, threshold_percent, budget, amount, currency, mail_status, coalesce(message_id, '')
  FROM openfaas_metering.budget_crossings
 WHERE namespace = %s AND period = to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM')
 ORDER BY crossed_at, threshold_percent"""


class DemoError(RuntimeError):
    pass


def _usage(now: datetime) -> list[dict]:
    """100 invocations of 10,000 s at 1 GiB: 1,000,000 GB-s this month. The standard
    plan includes 400,000; the other 600,000 at 0.0000166667 USD make 10.00 USD."""
    started = max(now - timedelta(hours=1), now.replace(day=1, hour=0, minute=0, second=0,
                                                          microsecond=0))
    return [{"event": "function_usage", "namespace": TENANT, "function_name": "checkout",
             "started": (started + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "duration": 10_000 * 10**9, "memory_bytes": 2**30} for i in range(100)]


def run(env) -> None:
    with psycopg.connect(env.database_url) as conn:
        conn.execute("""INSERT INTO openfaas_metering.tenants (namespace, budget_override)
                        VALUES (%s, %s) ON CONFLICT (namespace)
                        DO UPDATE SET budget_override = excluded.budget_override""",
                     (TENANT, BUDGET))
    print(f"{TENANT}: monthly budget {BUDGET} USD (tenants.budget_override; the namespace "
          "annotation chargeback/budget does the same)")
    gateway = env.gateway_url
    sender = WebhookSender(f"{gateway}/function/receive-usage.openfaas-system",
                           env.secret("webhook-secret"))
    r = sender.post(_usage(datetime.now(timezone.utc)))
    if r.status_code != 200:
        raise DemoError(f"receive-usage answered {r.status_code}: {r.text[:200]}")
    print(f"one delivery of this month's usage: {r.json()['accepted']} events accepted "
          "(1,000,000 GB-s: 10.00 USD after the included 400,000)")
    r = requests.post(f"{gateway}/function/evaluate-budgets.openfaas-system", data=b"",
                      timeout=120)
    if r.status_code != 200:
        raise DemoError(f"evaluate-budgets answered {r.status_code}: {r.text[:200]}")
    print(f"evaluate-budgets (as cron calls it): {json.dumps(r.json())}")
    again = requests.post(f"{gateway}/function/evaluate-budgets.openfaas-system", data=b"",
                          timeout=120).json()
    print(f"and a minute later, nothing more: crossed {again.get('crossed')}")
    with psycopg.connect(env.database_url) as conn:
        crossings = conn.execute(_CROSSINGS, (TENANT,)).fetchall()
    for kind, percent, budget, amount, currency, mail_status, _ in crossings:
        what = f"{percent} % of {budget}" if kind == "threshold" else f"forecast >= {budget}"
        print(f"  {kind:<9} {what:<18} at {amount} {currency}  mail {mail_status}")
    _show_mail(env.mail_dir, {row[6] for row in crossings})
    _show_webhooks(env, gateway)


def _show_mail(mail_dir: Path | None, message_ids: set[str]) -> None:
    if mail_dir is None or not mail_dir.exists():
        print("(SMTP_URL is set: the budget mails went to that server)")
        return
    shown = False
    for path in sorted(mail_dir.glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=default_policy)
        if str(msg["Message-ID"]).strip() in message_ids:
            print(f"  {path}  {msg['Subject']}")
            if not shown:
                body = msg.get_body(("plain",)).get_content().rstrip()
                print("\n    " + body.replace("\n", "\n    ") + "\n")
                shown = True


def _show_webhooks(env, gateway: str) -> None:
    directory = env.webhook_dir
    if directory is None:
        print("(WEBHOOK_URLS is set: the webhooks went to those endpoints)")
        return
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        files = sorted(directory.glob("*.json"))
        budget = [f for f in files if '"budget.' in f.read_text()]
        if budget:
            break
        # the async wake-up normally delivers within a second; cron would call this
        requests.post(f"{gateway}/function/deliver-webhooks.openfaas-system", data=b"",
                      timeout=60)
        time.sleep(0.5)
    else:
        raise DemoError(f"no budget webhook in {directory} after {WAIT_S} s; see the "
                        "deliver-webhooks log")
    types = Counter(json.loads(json.loads(f.read_text())["body"])["type"] for f in files)
    print(f"webhooks received by the sink ({directory}): "
          + ", ".join(f"{n} {t}" for t, n in sorted(types.items())))
    record = json.loads(budget[0].read_text())
    print(f"  {budget[0]}")
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        print(f"    {name}: {record['headers'].get(name) or record['headers'].get(name.title())}")
    print(f"    signature checked by the sink with standardwebhooks: {record.get('signature')}")
    print(f"    body: {record['body']}")
