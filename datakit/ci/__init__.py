"""DataKitCI: jobs per branch and PR, every state a commit in DataKit (spec ci.md)."""
