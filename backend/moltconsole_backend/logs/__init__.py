"""The log pipeline: sources (container output, OpenClaw's JSON file), a parser, a bounded
on-disk spool with a seek index, and a collector that feeds live subscribers."""
