"""A module whose __all__ says what it serves."""
from os.path import basename

__all__ = ["listed", "basename"]


def listed():
    return "listed"


def unlisted():
    return "unlisted"
