"""Decoding at the caret: the loop, multi-draft methods, stop rules and clean-up of the answer."""
