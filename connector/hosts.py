"""SendGrid's API hosts, in a module light enough for the TUI's form to import."""

GLOBAL_URL = "https://api.sendgrid.com"
EU_URL = "https://api.eu.sendgrid.com"
