"""The scaling policy: rules with durations, their evaluation, and the decisions they make."""
