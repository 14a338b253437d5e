"""The baseline for benchmarks/run.py: an MCPServer with no tools, on the same SDK, over stdio."""

from mcp.server.mcpserver import MCPServer

if __name__ == "__main__":
    MCPServer("bare").run()
