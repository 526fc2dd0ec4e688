"""Subscriptions (https://hl7.org/fhir/R4/subscription.html): the outbox every write fills, matching
against active subscriptions, and delivery over rest-hook, WebSocket, email and FHIR messages."""
