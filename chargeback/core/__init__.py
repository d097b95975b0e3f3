"""Shared plumbing: settings, database, migrations, partitions, responses, the gateway client, meter names. Imports no capability."""
