"""Mail and language plumbing for everything that writes to people: the SMTP adapter,
the MIME rules every message follows, the tenant's locale and the gettext catalogs."""
