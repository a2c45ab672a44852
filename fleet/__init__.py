"""fleet: audit, remediate and prove the fix of kernel-tracing overhead across a fleet."""

__version__ = "0.1.0"
