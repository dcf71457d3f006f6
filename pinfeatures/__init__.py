"""pinfeatures: build the text a search-relevance model reads for each Pin."""

__version__ = "0.1.0"
