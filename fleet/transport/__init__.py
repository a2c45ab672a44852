"""Reaching hosts: SSH, host keys, bastions, sudo, ssh_config, the fan-out."""
