"""Embedded default for `make run`: SQLite, Celery eager, in-memory channels, DEBUG on."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DEBUG", default=True)
