"""Seed 000, "Completion Messages", with an echo model standing in for
``primfunctions.completions`` (the seed's import)."""

import attrs

from taskrunner import Context
from taskrunner.events import Event, StartEvent, TextEvent, TextToSpeechEvent

# --- stand-in for `from primfunctions.completions import ...`: messages with serialize(),
# --- and a model that answers "echo: <last user message>".


@attrs.define
class UserMessage:
    content: str
    role: str = "user"

    def serialize(self):
        return {"role": self.role, "content": self.content}


@attrs.define
class AssistantMessage:
    content: str
    role: str = "assistant"

    def serialize(self):
        return {"role": self.role, "content": self.content}


@attrs.define
class _Response:
    message: AssistantMessage


def configure_provider(provider, voicerun_managed=False):
    return None


def deserialize_conversation(messages):
    kinds = {"user": UserMessage, "assistant": AssistantMessage}
    return [kinds[m["role"]](content=m["content"]) for m in messages]


async def generate_chat_completion(request):
    last = request["messages"][-1].content
    return _Response(AssistantMessage(content=f"echo: {last}"))


# --- the seed's handler, unchanged


async def handler(event: Event, context: Context):
    if isinstance(event, StartEvent):
        configure_provider("anthropic", voicerun_managed=True)
    if isinstance(event, TextEvent):
        user_message = event.data.get("text", "N/A")
        # Get existing messages and add new user message
        messages = deserialize_conversation(context.get_completion_messages())
        messages.append(UserMessage(content=user_message))
        # Generate response
        response = await generate_chat_completion({
            "provider": "anthropic",
            "model": "claude-haiku-4-5",
            "messages": messages,
        })
        # Store updated conversation
        messages.append(response.message)
        context.set_completion_messages(messages)
        yield TextToSpeechEvent(text=response.message.content, voice="nova")
