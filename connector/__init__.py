"""segsync connector package."""
