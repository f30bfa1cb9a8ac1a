"""Trainer callbacks and tracker adapters: thin, they call scan and rules and own no logic."""
