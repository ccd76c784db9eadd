"""poolsync core package: rules, membership, plans, the pool writer and Azure clients.

Pure decision logic (ids, models, rules, membership, naming, plan) does no I/O;
I/O lives in azure_clients, pool_writer, inventory and the storage modules.
"""
