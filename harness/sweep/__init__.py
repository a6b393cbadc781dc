"""What to measure: a case's identity and label, and the plan (command line or suite ->
cases), with every error found before anything runs.
"""
