"""A page another tenant serves from its own function on the gateway's origin: a link
(?link=) a customer may click, and a script that tries to read the portal as that
customer, on the gateway's origin (the old address) and on the portal's (?portal=).
What it could read lands in <pre id="out">."""
import html

PAGE = """<!DOCTYPE html><html><head><title>tenant b</title></head><body>
<a id="link" href="{link}">Your invoice</a>
<pre id="out">pending</pre>
<script>
const gateway = '/function/tenant-portal.openfaas-system';
const portal = {portal};
async function probe(url, init) {{
  try {{
    const r = await fetch(url, init);
    return r.type + ' ' + r.status + ' ' + (await r.text()).slice(0, 4000).replace(/\\s+/g, ' ');
  }} catch (e) {{ return 'failed ' + e; }}
}}
(async () => {{
  const out = [];
  for (const path of ['/', '/api/v1/invoices', '/api/v1/usage/current', '/invoices/{number}.pdf'])
    out.push('gateway ' + path + ' => ' + await probe(gateway + path, {{credentials: 'include'}}));
  for (const path of ['/', '/api/v1/invoices', '/invoices/{number}.pdf']) {{
    out.push('portal cors ' + path + ' => ' + await probe(portal + path, {{credentials: 'include'}}));
    out.push('portal no-cors ' + path + ' => ' +
             await probe(portal + path, {{credentials: 'include', mode: 'no-cors'}}));
  }}
  document.getElementById('out').textContent = out.join('\\n');
  document.title = 'done';
}})();
</script></body></html>"""


def handle(event, context):
    q = event.query
    body = PAGE.format(link=html.escape(q.get("link", "#")),
                       portal=repr(q.get("portal", "")),
                       number=html.escape(q.get("number", "none")))
    return {"statusCode": 200, "body": body,
            "headers": {"Content-Type": "text/html; charset=utf-8"}}
