"""The dialogue: engine (events -> replies), its flows, small talk and bot texts.

Import from the submodules (`bot.dialogue.engine` for Event, Reply, Button and Engine). The
form's field rules and the country list are domain data below the dialogue
(`bot.enquiries.fields`, `bot.enquiries.countries`).
"""
