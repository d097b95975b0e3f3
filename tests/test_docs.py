"""The documentation a newcomer reads: a README short enough to finish, with the deploy
steps near the top, and no link in it or in docs/ that leads nowhere (a missing file, or
a #fragment that names no heading of the page, slugged as GitHub slugs headings)."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .conftest import ROOT

README = ROOT / "README.md"
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"`[^`\n]*`")
MD_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"""<(?:img|a)\b[^>]*?\b(?:src|href)\s*=\s*["']([^"']+)["']""", re.I)


def _pages() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out, fenced = [], False
    for n, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((n, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text without markup, lower-cased, with
    everything but letters, digits, spaces, hyphens and underscores removed, spaces
    turned into hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text).lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor; a repeated slug gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in _prose_lines(page.read_text(encoding="utf-8")):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(page: Path) -> list[tuple[int, str]]:
    links = []
    for n, line in _prose_lines(page.read_text(encoding="utf-8")):
        line = INLINE_CODE.sub("", line)
        for target in MD_LINK.findall(line) + HTML_LINK.findall(line):
            parts = urlsplit(target)
            if parts.scheme or parts.netloc:  # https:, mailto:, //host
                continue
            links.append((n, target))
    return links


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for n, target in relative_links(page):
        path, _, fragment = target.partition("#")
        dest = (page.parent / unquote(path)).resolve() if path else page
        where = f"{page.relative_to(root)}:{n}: {target}"
        if not dest.exists():
            problems.append(f"{where}: no such file")
        elif fragment and dest.suffix == ".md" and unquote(fragment) not in anchors(dest):
            problems.append(f"{where}: no heading #{fragment} in {dest.relative_to(root)}")
    return problems


def test_the_readme_is_at_most_250_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail to docs/"


def test_the_readme_shows_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert "scripts/demo" in text
    assert "scripts/test" in text


def test_the_deploy_section_starts_within_the_first_120_lines():
    starts = [n for n, line in _prose_lines(README.read_text(encoding="utf-8"))
              if re.match(r"#{1,3}\s+Deploy\b", line)]
    assert starts, "README.md has no heading starting with Deploy"
    assert starts[0] <= 120, f"the deploy section starts at line {starts[0]}"


def test_the_deploy_section_runs_faas_cli_up():
    text = README.read_text(encoding="utf-8")
    deploy = re.search(r"^#{1,3}\s+Deploy\b.*?(?=^## |\Z)", text, re.M | re.S).group(0)
    assert re.search(r"^\s*(\S+=\S+\s+)*faas-cli up\b", deploy, re.M), "no faas-cli up command"


def test_slugs_are_githubs():
    # GitHub: "## Deploy to OpenFaaS with `faas-cli up`" -> #deploy-to-openfaas-with-faas-cli-up
    assert slug("Deploy to OpenFaaS with `faas-cli up`") == "deploy-to-openfaas-with-faas-cli-up"
    assert slug("Ingest: `scripts/bench/ingest`") == "ingest-scriptsbenchingest"
    assert slug("tenant-portal: each tenant's usage, charges and invoices") == \
        "tenant-portal-each-tenants-usage-charges-and-invoices"


def test_every_relative_link_in_the_readme_and_docs_leads_somewhere():
    pages = _pages()
    assert len(pages) > 1, "docs/ has no pages"
    checked = sum(len(relative_links(p)) for p in pages)
    assert checked > 20, f"only {checked} relative links found: is the link pattern broken?"
    problems = [p for page in pages for p in broken_links(page)]
    assert not problems, "\n".join(problems)


def test_a_broken_link_and_a_missing_heading_are_reported(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading\n")
    page.write_text("# Here\n\n[ok](other.md#a-code-heading) [self](#here)\n"
                    "[gone](missing.md) [nowhere](other.md#no-such-heading)\n"
                    "```\n[in code](missing-too.md)\n```\n`[inline](missing-three.md)`\n")
    assert broken_links(page, root=tmp_path) == ["page.md:4: missing.md: no such file",
                        "page.md:4: other.md#no-such-heading: no heading #no-such-heading in other.md"]
