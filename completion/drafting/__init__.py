"""Drafting: guesses of the next tokens from the prompt and the project, verified by the model."""
