"""The `poolsync` console command: the runbook operations of the HTTP API, run in this process."""
