"""Load tester: k6-style executors and thresholds, measured without coordinated omission."""
