"""Platform adapters: each turns platform events into :class:`bot.messages.Incoming`."""
