"""One verdict from every signal: is this image one of mine, which one, or parts of which?

Candidates come from every registered method's search, each is verified against what
was stored for its original at registration (local features and geometry), and one
verdict is given: ``match``, ``montage`` or ``no match`` (docs/identify.md).
"""

from .engine import MATCH, MONTAGE, NO_MATCH, Evidence, Identified, IdentifyConfig, Identifier, Verdict

__all__ = ["MATCH", "MONTAGE", "NO_MATCH", "Evidence", "Identified", "IdentifyConfig", "Identifier", "Verdict"]
