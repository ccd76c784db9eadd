"""The HTTP runbook API without azure.functions types."""
