"""grokkit."""
