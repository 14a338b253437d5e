"""A paid task's life: reserved, submitted, followed and saved by the task service, in the journal."""
