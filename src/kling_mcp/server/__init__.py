"""The MCP surface: the server, its tools, prompts and resources, hosting, and the player."""
