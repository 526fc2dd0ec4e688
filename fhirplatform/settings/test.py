"""Test settings: the same as base, with fast password hashing."""

from .base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Nothing delivers by itself in tests: they run the worker's steps (subscriptions/worker.py) when they
# mean to, or start a live server or a real Celery worker.
FHIR_WORKER = env.str("FHIR_WORKER", default="manual")  # noqa: F405
FHIR_SUBSCRIPTION_ALLOWED_ENDPOINTS = "127.0.0.1,::1,localhost"

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not Django's shared-cache in-memory database: only a file gives SQLite's real locking
    # (WAL, busy timeout, IMMEDIATE transactions), which the concurrency tests exercise.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / ".test-db.sqlite3")}  # noqa: F405
