"""Sweeps: a TOML file -> validated scenarios -> shared generations -> a crash-safe SQLite store."""
