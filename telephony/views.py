"""Pages for employees, identities, numbers and lines, and sharing grants."""
