"""DataKitCI tests: unit tests per module and scenarios CI-1..CI-20 (spec ci.md C)."""
