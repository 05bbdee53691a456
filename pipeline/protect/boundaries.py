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

# A word character of a script written with spaces between words. Chinese, Japanese, Korean
# and Thai run words together: "電話番号は090-1234-5678です" holds a phone number that a
# boundary on every word character (\w: these letters too) would never let start or end.
WORD = (
    r"[^\W\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
    r"\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f]"
)
LEFT_EDGE = (
    r"(?<!" + WORD + r")(?<![@.+/-])" + AFTER_PLACEHOLDER
)  # left boundary: not inside a word, address, number or path
RIGHT_EDGE = r"(?!" + WORD + r"|[@/-]|\." + WORD + r"|\.?\[[A-Z])"  # right boundary
START_OK, END_OK = re.compile(LEFT_EDGE), re.compile(RIGHT_EDGE)
