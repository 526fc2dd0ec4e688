"""Embedded default for `make run`: SQLite, Celery eager, in-memory channels.

DEBUG stays off unless asked for (`DEBUG=true make run`): its error pages show tracebacks, settings
and the environment to anyone who can reach the server, and `make run` is what people expose."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DEBUG", default=False)
