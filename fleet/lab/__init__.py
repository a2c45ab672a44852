"""Local lab fleet: one real sshd on loopback fronting per-host file trees (see lab.py)."""

from fleet.lab.lab import LabError, LabInfo, down, host_plan, status, up
from fleet.lab.trees import SCENARIOS, make_host_tree

__all__ = [
    "SCENARIOS",
    "LabError",
    "LabInfo",
    "down",
    "host_plan",
    "make_host_tree",
    "status",
    "up",
]
