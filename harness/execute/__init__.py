"""Measuring cases: one case in a process (``worker``), a process per case
(``isolation``), the runner over a plan, a Ray cluster, shape checks and profiles.
"""
