"""Errors a user can cause. The CLI turns each into one line on stderr and exit code 2."""


class UsageError(Exception):
    """Bad input (inventory, playbook, pattern, flag): reported before any host is contacted."""


class InventoryError(UsageError):
    """The inventory file is unreadable, malformed, or a pattern selects nothing."""


class PlaybookError(UsageError):
    """The playbook file is unreadable or malformed."""
