"""The running app: runtime wiring, reconciler, event flusher, health check."""
