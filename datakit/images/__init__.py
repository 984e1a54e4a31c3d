"""`datakit image`: DataKit snapshots as OCI container images (docs/images.md)."""
