"""What a request may be: the model capability table, field rules, and local files as media."""
