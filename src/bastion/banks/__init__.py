"""Banks: named, versioned sets of known content (hashes, texts, embeddings) with labels, for
matching and recall."""
