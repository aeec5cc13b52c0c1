"""market: see DESIGN §6."""
