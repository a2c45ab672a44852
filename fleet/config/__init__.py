"""What the user gives: inventory, playbook, state directory, output files."""
