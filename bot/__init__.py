"""The asyncio core of blenderd: config, context building, the model worker and the chat logic.

Nothing here imports a platform library; adapters turn platform events into
:class:`bot.messages.Incoming` and send back :class:`bot.messages.Reply`.
"""
