"""Seed 000, "Properties" and "Variables": session identity and variables."""

import logging

from taskrunner import Context
from taskrunner.events import Event, StartEvent

logger = logging.getLogger("seed_agent")


async def handler(event: Event, context: Context):
    if isinstance(event, StartEvent):
        # Access session info
        logger.info(f"Agent: {context.agent_id}")
        logger.info(f"Environment: {context.environment}")
        logger.info(f"Session: {context.session_id}")
        # Access environment variables (API keys, config)
        api_key = context.variables.get("OPENAI_API_KEY")

        api_key = context.variables.get("ANTHROPIC_API_KEY")
        region = context.variables.get("AWS_REGION", "us-east-1")  # with default
        context.set_data("seen", {"api_key": api_key, "region": region})
