"""The data-privacy statement a user agrees to before a destination may export.

Kept free of heavy imports so the TUI's consent dialog shows it without
loading httpx; the command line records the same words.
"""

CONSENT_STATEMENT = (
    "I confirm that the people in the segments I export to this destination have agreed "
    "to receive email from us, that sending their profile data to Twilio SendGrid is "
    "allowed by our privacy policy and by the law that applies to them (for example the "
    "GDPR), and that I am authorised to make this decision for my organisation."
)
