"""Console: the customised Django admin for rules, tokens, identities, subscriptions and audit (a later issue)."""
