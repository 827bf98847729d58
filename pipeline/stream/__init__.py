"""The streaming flow: Redis Streams in, emotion labels out, through a Ray pool of engines."""
