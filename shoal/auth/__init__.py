"""Request authentication: signature algorithms (pure functions), payload decoders, identities."""
