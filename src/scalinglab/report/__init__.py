"""What the report opens on: the headline numbers of every experiment, one table (summary.py)."""
