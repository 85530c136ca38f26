"""Real asyncio clients (aiohttp, httpx, openai, anthropic, redis-py, asyncpg) run as
taskrunner tasks against real local servers (issue 8, "real clients in the suite")."""
