"""Pure decision logic (no I/O, no Azure SDK): ids, models, rules, membership, naming, plans."""
