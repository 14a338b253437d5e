"""kling-mcp: an MCP server that makes Kling videos through the AceDataCloud API."""
