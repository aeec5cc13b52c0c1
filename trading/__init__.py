"""trading: see DESIGN §6."""
