"""Training and evaluation data: synthetic montages (:mod:`.montage`), editorial changes
(:mod:`.edits`), the comparator's (original, query) pairs (:mod:`.pairs`), and the
corpus with its fixed train/test split (:mod:`.corpus`).

Nothing here is needed to hash, match or compare: inference packages (``hashing``,
``db``, ``compare``, ``segments``, ``service``) never import it; training
(``models``) and evaluation (``evaluation``, ``benchmarks``) do.
"""
