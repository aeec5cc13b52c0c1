"""research: see DESIGN §6."""
