"""What runs on a host (POSIX sh scripts) and the parsers of what they print."""
