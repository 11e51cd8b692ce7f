"""Experiments: tasks x strategies x seeds, trained, stored in SQLite and compared."""
