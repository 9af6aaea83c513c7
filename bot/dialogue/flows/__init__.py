"""One module per conversation flow; the engine's turn loop routes each event to one of them.

- `faq`: free text and topics answered from the knowledge base (and small talk);
- `enquiry`: the enquiry form, its steps declared once, and the submission;
- `privacy`: the privacy notice and /forget;
- `commands`: /start, /help, /faq, /status, /language, /cancel and unknown commands.
"""
