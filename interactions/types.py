"""The values the interaction layer hands to adapters: what they render, never how it was found."""

from resources.search.engine import SearchPage
from resources.selectors import HistoryEntry, HistoryPage
from resources.services import Stored

__all__ = ["HistoryEntry", "HistoryPage", "SearchPage", "Stored"]
