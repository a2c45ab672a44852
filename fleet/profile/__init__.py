"""fleet profile: where each host's CPU goes (perf samples, BPF run time, hook rates)."""
