"""The command line: one module per command group, each exposing ``register(app)``.

:mod:`newsstream.cli.app` builds the ``newsstream`` command and is the console script's entry
point; :mod:`newsstream.cli.common` holds what every command shares (loading the settings,
failing with an exit code). Nothing outside this package imports it.
"""
