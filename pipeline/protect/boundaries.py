"""Where a detector's match may start and end, and the typed placeholder (`[EMAIL]`, ...) that
replaces it. A placeholder reads as a word, so redacting redacted text finds nothing new.
"""

from __future__ import annotations

import re

PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]*\]")
# A placeholder reads as a word: no match starts right after one or ends right before one, so
# redacting redacted text finds nothing new (its "]" would otherwise open a boundary that the
# redacted value's last character had closed).
AFTER_PLACEHOLDER = r"(?<![A-Z]\])"
BEFORE_PLACEHOLDER = r"(?!\[[A-Z])"

LEFT_EDGE = (
    r"(?<![\w@.+/-])" + AFTER_PLACEHOLDER
)  # left boundary: not inside a word, address, number or path
RIGHT_EDGE = r"(?![\w@/-]|\.\w|\.?\[[A-Z])"  # right boundary
START_OK, END_OK = re.compile(LEFT_EDGE), re.compile(RIGHT_EDGE)
