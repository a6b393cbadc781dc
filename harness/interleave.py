"""``python -m harness.interleave``: the process of one side of ``harness ab``.

Every harness starts a side's process with this module path, whichever harness the
side's interpreter has installed (protocol 2 says so), so the path stays here while the
code lives in :mod:`harness.abtest.pair`.
"""

from harness.abtest.pair import serve

if __name__ == "__main__":
    serve()
