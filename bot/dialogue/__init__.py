"""The dialogue: engine (events -> replies), the enquiry form, countries and bot texts.

Import from the submodules (`bot.dialogue.engine` for Event, Reply, Button and Engine): this
package imports nothing itself, so `bot.enquiries` can use the form without a cycle.
"""
