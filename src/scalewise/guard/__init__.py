"""Guards that keep a service up while it grows: rate limits, load shedding, coalescing."""
