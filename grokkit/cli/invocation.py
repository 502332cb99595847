"""What ``main`` was called with, read by the error messages: the arguments, and whether to show tracebacks."""

DEBUG_ENV = "GROKKIT_DEBUG"
debug = False  # --debug or GROKKIT_DEBUG=1: tracebacks and jsonargparse's full errors instead of one line
argv: list[str] = []  # the arguments, for the config files and keys that errors name
cwd = ""  # the working directory it was called in, which relative config paths are relative to
