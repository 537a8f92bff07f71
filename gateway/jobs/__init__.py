"""Job entry points that need a channel and the engine: they run the channel, take what it
reports, and hand that to the engine in the same transaction."""
