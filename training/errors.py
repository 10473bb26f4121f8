"""The error a wrong configuration raises, where each module that checks one can import it
(training.config checks the keys, training.data what only the dataset's size decides)."""


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message names the key and what would be right."""
