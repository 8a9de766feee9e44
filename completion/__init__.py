"""The completion engine: live KV caches, decoding, drafting. No LSP here (see lsp_server/).

Hugging Face libraries read these once, when first imported; every engine module imports this
package first, so they are set before any of ours imports transformers: nothing is downloaded.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
