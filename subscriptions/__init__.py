"""Subscriptions: R4 Subscription matching from the write outbox and delivery by Celery (a later issue)."""
