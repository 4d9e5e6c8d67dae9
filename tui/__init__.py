"""segsync tui package."""
