"""Media: decoding untrusted image, video and audio bytes within limits, and the models that read them."""
