"""The token conventions data and models share: special token ids and the item layout.

Every item is 5 tokens: atomic ``h r t </a> <pad>``, two-hop ``h r1 r2 t </a>``; targets that take no loss
are ``IGNORE``.
"""

PAD, EOS = 0, 1  # <pad>, </a>
N_SPECIAL = 2  # entity and relation ids start after the special tokens
ITEM_LEN = 5
IGNORE = -100  # torch's cross-entropy default ignore index
