"""chargeback: usage metering and invoicing for OpenFaaS.

One package shared by every function in the bundle (stack.yml copies it into
each image). Pure logic lives in modules without I/O; Postgres, Kubernetes,
SMTP and the gateway sit in small adapter modules (db, migrate, gateway, ...).
"""
