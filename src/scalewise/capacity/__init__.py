"""Capacity planning: Universal Scalability Law fit, queueing model, plan sizing."""
