"""The one exception type for bad user input: its message is one line saying what is wrong and how to fix it."""


class ConfigError(ValueError):
    """A config value, data file, dataset directory or checkpoint that grokkit cannot use."""
