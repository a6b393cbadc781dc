"""Other tools' formats: what asv and the nightly track, asv's results as harness runs,
harness runs as pytest-benchmark JSON.
"""
