"""Documents: an invoice rendered (HTML, text, PDF, CSV) and e-mailed exactly once."""
