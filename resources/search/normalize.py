"""String normalisation shared by the index and the query side (https://hl7.org/fhir/R4/search.html#string):
string search is case- and accent-insensitive and ignores differences in whitespace and punctuation
spacing, so both sides store and compare the same folded form."""

import unicodedata

MAX_LENGTH = 255


def normalize_string(value: str) -> str:
    """Casefold, strip combining accents, collapse whitespace; truncated to the index column size."""
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.split())[:MAX_LENGTH]
