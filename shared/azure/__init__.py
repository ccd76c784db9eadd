"""Talking to Azure Resource Manager: SDK clients, the retry policy, inventory reads, pool writes."""
