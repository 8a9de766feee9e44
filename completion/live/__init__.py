"""The live document: text, tokens and a KV cache of the whole document kept in step with every edit."""
