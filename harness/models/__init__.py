"""What a plugin declares and how it is found: model specs and symbolic shapes, suites, the
hook specifications and the registry. Imports only the foundation (``errors``, ``axes``).
"""
