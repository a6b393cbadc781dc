"""Results on disk: the typed records (``record``), what a line must hold (``schema``),
the files (``results``: one writer, one reader) and the DataFrame view (``frame``).
"""
