"""Where a host's audit happens: facts, checks, the run."""
