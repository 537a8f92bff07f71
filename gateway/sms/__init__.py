"""The SMS path: Twilio's webhooks in, the outbound send pipeline out."""
