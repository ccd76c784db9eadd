"""The audit run: list-based reads, findings, report rendering and storage."""
