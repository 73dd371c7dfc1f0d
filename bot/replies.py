"""What the bot says when it does not answer with the model: every user-facing line in one place."""

BUSY = "I'm answering a lot of people right now. Please try again in a moment."
SLOW_DOWN = "You're sending messages faster than I can answer. Please wait a little and try again."
TIMEOUT = "Sorry, I took too long to think of an answer. Could you say that again?"
FAILED = "Sorry, something went wrong on my side while answering. Please try again."
TEXT_ONLY = "I can only read text messages, sorry. Could you type it out?"
EMPTY = "It looks like your message was empty. What would you like to talk about?"
STOPPING = "I'm restarting right now. Please send that again in a minute."
UNSTORABLE = "Sorry, I couldn't read that message. Could you send it again in other words?"
NOTHING_TO_SAY = "Hmm, I'm not sure what to say to that. Tell me more?"
MISSED = (
    "Sorry, I was offline when you wrote to me ({when}) and missed your message. Could you send it again?"
)
