"""tenant-portal: each tenant's usage, charges, documents and rejected events."""
