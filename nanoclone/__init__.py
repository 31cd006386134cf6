# NanoClone's version: the one place it is written (pyproject.toml and the API schema read it).
__version__ = "0.2.0"
