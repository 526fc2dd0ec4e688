"""Access: authentication of callers, their FHIR identity, the rule chain and the fail-closed
queryset scoping (see the authentication, identity and rules issues). Nothing is enforced here yet:
until the rule chain lands every API call runs as the operator."""
