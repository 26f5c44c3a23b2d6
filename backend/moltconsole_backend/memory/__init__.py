"""The agent's memory kept with history: snapshots of each sandbox's state directory in a
repository (a local directory by default, or any S3-compatible bucket), and their restore."""
