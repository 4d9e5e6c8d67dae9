"""segsync store package."""
