"""The AI gateway: the sandbox's only route to a model provider, and the ledger of what it cost."""
