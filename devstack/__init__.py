"""Local development stack: Azurite, the ARM emulator and a local Functions host, wired together."""
