"""config: see DESIGN §6."""
