"""scripts/bench/email: email-invoice end to end, against a naive baseline.

Self-contained: an embedded PostgreSQL (durable settings) and an SMTP sink
writing .eml files, both in a temporary directory; email-invoice served by the
template's own server behind the local gateway. N finalized invoices (the
tests' sample: five lines, tiers, a spot discount, an adjustment, tax) are
handed to `/async-function/email-invoice` exactly as aggregate-month's
fan-out does; the clock stops when the database shows every one sent. Then
the naive baseline: a further set of invoices, each sent with one synchronous
call through `/function/`, one after the other. Last, where a send's time
goes, measured in this process on a sample: render (HTML and text), PDF,
the CSV files, building the message, and the SMTP conversation.

When other work shares the machine the wall times grow with it: the fan-out
also prints the load average and the CPU seconds each part used (from /proc),
whose sum over the cores is the least time the run takes on a machine of its
own.
"""
from __future__ import annotations

import argparse
import cProfile
import dataclasses
import email
import io
import logging
import os
import platform
import pstats
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import requests
from devstack.pg import EmbeddedPostgres, free_port
from devstack.runtime import Runtime
from devstack.sample_invoices import insert_invoice
from devstack.smtp import SmtpSink
from devstack.stack import load

from chargeback.billing.export import usage_csv
from chargeback.core import migrate
from chargeback.core.settings import load as load_settings
from chargeback.documents import rendered as invoice_rendered
from chargeback.mail import smtp as mailer
from chargeback.documents.presentation import present
from chargeback.documents.rendering import lines_csv, render_html, render_text
from chargeback.documents.message import attachment_names, build
from chargeback.documents.rows import read_document
from chargeback.documents.pdf import render_pdf

ROOT = Path(__file__).resolve().parents[2]
FUNCTION = "email-invoice.openfaas-system"


def make_invoices(database_url: str, count: int, prefix: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        return [insert_invoice(conn, namespace=f"{prefix}-{i:05d}",
                               email=f"billing@{prefix}-{i:05d}.example")
                for i in range(count)]


def statuses(database_url: str, ids: list[str]) -> dict[str, int]:
    """How many of `ids` are in each status (finalized = not yet handled)."""
    with psycopg.connect(database_url) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM openfaas_metering.invoices"
                                 " WHERE invoice_id = ANY(%s) GROUP BY status",
                                 (ids,)).fetchall())


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int, children: bool = False) -> float:
    """CPU seconds (user + system, all threads) process `pid` has used; with
    `children`, also those of its children it has waited for (PostgreSQL's exited
    backends)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    used = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children
                                                  else 0)
    return used / _TICK


def cpu_by_part(runtime: Runtime, pg: EmbeddedPostgres) -> dict[str, float]:
    """CPU seconds used so far by each part of the run: the email-invoice replicas,
    PostgreSQL (the postmaster, its live backends and those that exited), and this
    process (the gateway, the SMTP sink, the driver's calls)."""
    postmaster = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
    backends = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                and _parent(int(p.name)) == postmaster]
    return {"email-invoice": sum(_cpu_s(p.proc.pid, True) for p in runtime.replicas[
                "email-invoice"]),
            "PostgreSQL": _cpu_s(postmaster, True) + sum(map(_cpu_s, backends)),
            "gateway, SMTP sink, driver": _cpu_s(os.getpid())}


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def fan_out(gateway_url: str, database_url: str, ids: list[str], deadline_s: float) -> float:
    session = requests.Session()
    started = time.perf_counter()
    for invoice_id in ids:  # aggregate-month's hand-off: one async call per invoice
        r = session.post(f"{gateway_url}/async-function/{FUNCTION}",
                         json={"invoice_id": invoice_id}, timeout=30)
        if r.status_code != 202:
            sys.exit(f"bench: async call answered {r.status_code}: {r.text[:200]}")
    # until none is left finalized (sent, or undeliverable: the check below refuses those)
    while (seen := statuses(database_url, ids)).get("finalized", 0):
        if time.perf_counter() - started > deadline_s:
            sys.exit(f"bench: after {deadline_s:.0f} s the invoices are {seen}")
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    if seen != {"sent": len(ids)}:
        sys.exit(f"bench: expected all {len(ids)} sent, the database has {seen}")
    return elapsed


def check_mail(mail_dir: Path, expected: int, prefix: str) -> None:
    """Exactly one mail per invoice made with `prefix`, each to its own tenant."""
    recipients = sorted(email.message_from_bytes(p.read_bytes())["To"]
                        for p in mail_dir.glob("*.eml"))
    mine = [to for to in recipients if f"@{prefix}-" in to]
    wanted = [f"billing@{prefix}-{i:05d}.example" for i in range(expected)]
    if sorted(to.split("<")[-1].rstrip(">") for to in mine) != wanted:
        sys.exit(f"bench: {len(mine)} mails to {prefix}-* tenants, expected one to each of "
                 f"{expected}")


def one_by_one(gateway_url: str, ids: list[str]) -> float:
    session = requests.Session()
    started = time.perf_counter()
    for invoice_id in ids:
        r = session.post(f"{gateway_url}/function/{FUNCTION}", json={"invoice_id": invoice_id},
                         timeout=60)
        if r.status_code != 200 or r.json().get("status") != "sent":
            sys.exit(f"bench: call answered {r.status_code}: {r.text[:200]}")
    return time.perf_counter() - started


def stages(settings, database_url: str, ids: list[str]) -> dict[str, float]:
    """Mean milliseconds per invoice of each stage, over `ids`, in this process."""
    totals = dict.fromkeys(("read invoice", "usage CSV (export)", "render HTML + text",
                            "render PDF", "lines CSV", "build message", "SMTP send"), 0.0)
    server = mailer.parse_url(settings.smtp_url, settings.smtp_timeout_s)
    with psycopg.connect(database_url) as conn:
        for invoice_id in ids:
            t0 = time.perf_counter()
            invoice, supplier = read_document(conn, invoice_id, settings)
            t0b = time.perf_counter()
            usage = usage_csv(conn, invoice_id)
            t1 = time.perf_counter()
            view = present(invoice, supplier, "en", attachment_names(invoice, supplier.name, True))
            html, text = render_html(view), render_text(view)
            t2 = time.perf_counter()
            pdf = render_pdf(view, invoice.issued_at)
            t3 = time.perf_counter()
            csv_text = lines_csv(invoice)
            t4 = time.perf_counter()
            rendered = invoice_rendered.Rendered(view, text, html, pdf, [])
            files = invoice_rendered.render(invoice, supplier, settings, usage).attachments
            t4b = time.perf_counter()  # (render() again, only to get the attachments)
            msg, envelope = build(invoice, subject=invoice_rendered.subject(
                invoice, rendered), text=text, html=html, attachments=files,
                mail_from=settings.mail_from, reply_to=None, bcc=None,
                sent_at=datetime.now(timezone.utc))
            t5 = time.perf_counter()
            mailer.send(server, msg, envelope.sender, envelope.recipients)
            t6 = time.perf_counter()
            for key, spent in zip(totals, (t0b - t0, t1 - t0b, t2 - t1, t3 - t2, t4 - t3, t5 - t4b,
                                           t6 - t5)):
                totals[key] += spent
            assert csv_text
    return {key: value * 1000 / len(ids) for key, value in totals.items()}


def profile(settings, ids: list[str], top: int) -> str:
    """email-invoice's own work for `ids` (chargeback.documents.delivery.deliver, as the
    handler calls it: claim, read, render, send, record), in this process under
    cProfile with a CPU clock; the `top` functions by cumulative time."""
    from chargeback.documents import delivery

    profiler = cProfile.Profile(time.process_time)
    started = time.process_time()
    profiler.enable()
    for invoice_id in ids:
        outcome = delivery.deliver(settings, invoice_id)
        if outcome.status != 200:
            sys.exit(f"bench: deliver answered {outcome.status}: {outcome.body}")
    profiler.disable()
    spent_ms = (time.process_time() - started) * 1000 / len(ids)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    return (f"{spent_ms:.1f} ms CPU per send, the profiler's own cost included\n"
            + out.getvalue().split("\n\n", 1)[-1].replace(str(ROOT) + "/", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench/email", description=__doc__)
    parser.add_argument("--invoices", type=int, default=1000)
    parser.add_argument("--replicas", type=int, default=None,
                        help="email-invoice replicas behind the gateway (default: "
                             "stack.yml's com.openfaas.scale.min), as the autoscaler adds")
    parser.add_argument("--baseline", type=int, default=200,
                        help="invoices sent one synchronous call at a time (default 200)")
    parser.add_argument("--deadline", type=float, default=600,
                        help="seconds the fan-out may take before the bench fails (600)")
    parser.add_argument("--sample", type=int, default=100,
                        help="invoices timed stage by stage in this process (default 100)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="then N more sent by email-invoice's code in this process "
                             "under cProfile (CPU time); prints the top 25 functions")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="chargeback-bench-email-") as tmp:
        tmp = Path(tmp)
        pg = EmbeddedPostgres(tmp / "pg", free_port()).start()
        sink = runtime = None
        try:
            with psycopg.connect(pg.url) as conn:
                migrate.apply(conn)
            sink = SmtpSink(tmp / "mail", free_port()).start()
            stack = load(ROOT / "stack.yml")
            fn = stack.functions["email-invoice"]
            args.replicas = args.replicas or fn.min_replicas
            fn = dataclasses.replace(fn, labels={**fn.labels,
                                                 "com.openfaas.scale.min": str(args.replicas)})
            stack = dataclasses.replace(stack, functions={fn.name: fn})
            env = {"DATABASE_URL": pg.url, "SMTP_URL": sink.url, "SECRETS_DIR": str(tmp)}
            runtime = Runtime(stack, build_root=tmp / "build", log_dir=tmp, cron=False,
                              function_env=env).start()
            print(f"email-invoice ({args.replicas} replicas) behind the local gateway "
                  f"({runtime.gateway_url}), "
                  f"WAITRESS_THREADS={os.environ.get('WAITRESS_THREADS', '4')}, "
                  f"4 async workers; {platform.python_version()}, {os.cpu_count()} cores",
                  flush=True)
            ids = make_invoices(pg.url, args.invoices, "fan")
            load_before, cpu_before = os.getloadavg()[0], cpu_by_part(runtime, pg)
            total_s = fan_out(runtime.gateway_url, pg.url, ids, args.deadline)
            cpu = {part: used - cpu_before[part]
                   for part, used in cpu_by_part(runtime, pg).items()}
            load_after = os.getloadavg()[0]
            check_mail(tmp / "mail", args.invoices, "fan")
            mails = len(list((tmp / "mail").glob("*.eml")))
            print(f"\nasync fan-out: {args.invoices:,} invoices sent in {total_s:.1f} s, "
                  f"{total_s * 1000 / args.invoices:.1f} ms per invoice, "
                  f"{args.invoices / total_s:.0f} invoices/s ({mails:,} .eml files); "
                  f"load average {load_before:.1f} before, {load_after:.1f} after")
            print(f"CPU used by the fan-out: {sum(cpu.values()):.1f} s, "
                  + ", ".join(f"{part} {used:.1f} s" for part, used in cpu.items())
                  + f"; on {os.cpu_count()} cores of its own at least "
                  f"{sum(cpu.values()) / os.cpu_count():.1f} s")
            base_ids = make_invoices(pg.url, args.baseline, "one")
            base_s = one_by_one(runtime.gateway_url, base_ids)
            check_mail(tmp / "mail", args.baseline, "one")
            base_per_ms = base_s * 1000 / args.baseline
            print(f"baseline, one synchronous call at a time: {args.baseline:,} invoices in "
                  f"{base_s:.1f} s, {base_per_ms:.1f} ms per invoice "
                  f"(extrapolated, not measured: 1,000 would take {base_per_ms:.0f} s)")
            print(f"ratio: the fan-out is {base_per_ms / (total_s * 1000 / args.invoices):.1f}x"
                  " the baseline per invoice")
            settings = dataclasses.replace(load_settings({**os.environ, **env,
                                                          **stack.functions["email-invoice"]
                                                          .environment}),
                                           database_url=pg.url)
            sample = make_invoices(pg.url, args.sample, "stage")
            per_stage = stages(settings, pg.url, sample)
            print(f"\nwhere one send goes (mean of {args.sample} in this process, ms):")
            for key, ms in per_stage.items():
                print(f"  {key:<26} {ms:7.2f}")
            print(f"  {'sum':<26} {sum(per_stage.values()):7.2f}   (plus, in the function: "
                  "claim and record, 2 commits, and HTTP)")
            if args.profile:
                print(f"\nemail-invoice's code for {args.profile} sends, in this process: "
                      + profile(settings, make_invoices(pg.url, args.profile, "prof"), 25))
        finally:
            for part in (runtime, sink, pg):
                if part is not None:
                    part.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
