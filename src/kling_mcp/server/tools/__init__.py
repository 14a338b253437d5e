"""The MCP tools, by family: each module holds its tools' input models, descriptions and handlers.

- `video`: text, image, extend, Turbo, storyboard, saved assets
- `media`: motion transfer, lip-sync, talking photo
- `commerce`: product studio and presenter videos
- `tasks`: task lookups, the model list and the task resources
- `common`, `generation`, `local_media`, `spec`: what they share (the paid-request base and the
  video task, the submit-and-wait handler, local files in a request, and how a spec becomes a tool)
- `catalog`: every tool, built into SDK tools; `resources`: the task resources

Nothing here is imported at start-up but `resources`: the tools are built when a client first
lists or calls them.
"""
