"""Container images from DataKit snapshots: layers from tree diffs, pushed to OCI registries."""
