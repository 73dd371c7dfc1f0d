"""Points discord.py at the fake Discord server in a `python -m bot` subprocess started by a test.

Tests put this folder on PYTHONPATH and name the fake's URLs in the environment; discord.py has
no setting for its API base (``Route.BASE``) or gateway URL, so this is where they are changed.
"""

import os

if os.environ.get("BLENDERD_TEST_DISCORD_API"):
    import discord.http
    import yarl
    from discord.gateway import DiscordWebSocket

    discord.http.Route.BASE = os.environ["BLENDERD_TEST_DISCORD_API"]
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["BLENDERD_TEST_DISCORD_GATEWAY"])
