"""The native generation engine: one readable forward, a slotted KV cache, sampling and the decode loop."""
