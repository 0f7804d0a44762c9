"""The HTTP service (`bastion serve`): OpenAI-compatible moderation API, keys, decision log, metrics."""
