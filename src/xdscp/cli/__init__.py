"""The ``xdscp`` command line."""
