"""Benchmarks of the portal at the scale of a 10,000-employee enterprise: pages,
onboarding by CSV import with the HSS sync, a registration storm, and call signing and
verification, each against a baseline measured in the same run. See docs/benchmarks.md.
"""
