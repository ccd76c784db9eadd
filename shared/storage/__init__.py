"""Durable state in Azure Storage: intents and leases, member index, reconcile log, audit reports and jobs."""
