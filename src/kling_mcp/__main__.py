from kling_mcp import main

main()
