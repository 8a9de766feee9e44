"""The project: the one folder walk, its token store for drafting and its snippets for cross-file context."""
