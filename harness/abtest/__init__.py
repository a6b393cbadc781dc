"""Interleaved A/B: one pair of processes timed turn about (``pair``), a case's session of
pairs until its verdict (``session``), bisection over commits, and what a side's code is
(``sources``).
"""
