"""Ready-made ``scalewise.yaml`` files from the seeds' scaling plans (``scalewise init --preset``).

Each preset is the whole file as text, with the seed's own words in comments, so a user starts
from a policy they can read and edit. Every preset parses without problems and without
flapping warnings (tested).
"""

from __future__ import annotations

from typing import Final

from scalewise.errors import ConfigError

_HEADER: Final = """\
# scalewise.yaml, written by `scalewise init --preset {name}`.
# Check it with `scalewise check-config`; see what it would have decided last week with
# `scalewise replay`. Units: durations 250ms/10s/5m/1h, ratios 5% or 0.05, memory 400MB.
version: 1

metrics:
  interval: 10s   # one snapshot per 10 s per worker: the unit the store keeps
  history: 15m    # what each process keeps in memory for /health/scaling

"""

_MVP: Final = """\
# Preset "mvp", from seed 001 (a wellness app on Render): start small, on "MVP (0.5 CPU +
# 512MB)", and move to "production (1 CPU + 2GB)" "based on real usage data and performance
# metrics". Its triggers, word for word:
#
#   Scale Up Triggers (0.5 CPU -> 1 CPU + 2GB):
#   - Average response time > 8 seconds for 1 hour
#   - Peak concurrent users > 10 consistently
#   - Memory usage > 400MB for 30 minutes
#   - Error rate > 5% for 1 hour
#   Scale Down Triggers (1 CPU -> 0.5 CPU):
#   - Average response time < 3 seconds for 24 hours
#   - Peak concurrent users < 5 for 48 hours
#   - Memory usage < 200MB for 48 hours
#   - Error rate < 1% for 24 hours
policy:
  preset: mvp
  evaluation_interval: 1m
  current_plan: starter       # "MVP Phase (0.5 CPU + 512MB) - Cost: $7/month"
  instances: 1
  scale_down_requires: all    # scale down only when every scale_down rule fires
  cooldown: 1h                # after a change, wait until the up-rules' hour is new data
  rules:
    # Scale up when any of these fires. `window` is what the metric is computed over (the
    # seed averages its last 10 snapshots); `for` is how long it must stay true.
    - name: slow_responses
      metric: latency_avg
      window: 10m
      above: 8s               # "Average response time > 8 seconds for 1 hour"
      for: 1h
      action: scale_up
    - name: high_concurrency
      metric: concurrency_peak
      window: 10m
      above: 10               # "Peak concurrent users > 10 consistently"
      for: 10m
      action: scale_up
    - name: high_memory
      metric: memory_mb
      window: 5m
      above: 400MB            # "Memory usage > 400MB for 30 minutes" (of 512MB)
      for: 30m
      action: scale_up
    - name: high_error_rate
      metric: error_rate
      window: 10m
      above: 5%               # "Error rate > 5% for 1 hour"
      for: 1h
      action: scale_up
      severity: critical
    # Scale down only when all of these fire. The window is the seed's whole period (a
    # quiet night has no requests, and no data means no decision; a day always has some),
    # held for an hour before it counts.
    - name: fast_responses
      metric: latency_avg
      window: 24h
      below: 3s               # "Average response time < 3 seconds for 24 hours"
      for: 1h
      action: scale_down
      severity: info
    - name: low_concurrency
      metric: concurrency_peak
      window: 48h
      below: 5                # "Peak concurrent users < 5 for 48 hours"
      for: 1h
      action: scale_down
      severity: info
    - name: low_memory
      metric: memory_mb
      window: 48h
      below: 200MB            # "Memory usage < 200MB for 48 hours"
      for: 1h
      action: scale_down
      severity: info
    - name: low_error_rate
      metric: error_rate
      window: 24h
      below: 1%               # "Error rate < 1% for 24 hours"
      for: 1h
      action: scale_down
      severity: info
  # Plans come from the default catalog (Starter $7, Standard $25, Pro $85 ...); list your
  # own under `plans:` to override it.
  # notifications:
  #   receivers:
  #     - {name: ops, kind: webhook, url: "http://127.0.0.1:9093/hook"}
  # command: {argv: [echo, scale, to], dry_run: true}
"""

_BALANCED: Final = """\
# Preset "balanced", from seed 002 (a QC document platform: API, AI service and workers on
# Render, "1 instance, Starter ($7/month), 0.5 CPU, 512 MB RAM" each). Its triggers:
#
#   Scale Up When:
#   - CPU usage > 70% for extended period
#   - Memory usage > 80%
#   - Response time > 2 seconds (P95)
#   - Error rate > 1%
#   - Queue depth > 100 jobs
#   Scale Down When:
#   - CPU usage < 30% for extended period
#   - Memory usage < 50%
#
# The service "supports horizontal scaling" ("2-3 Instances: For moderate load, 5+
# Instances: For high load"), so replicas follow CPU like a Kubernetes HPA.
policy:
  preset: balanced
  evaluation_interval: 1m
  current_plan: starter
  instances: 1
  scale_down_requires: all
  cooldown: 10m
  rules:
    # cpu_percent is the workers' CPU as `top` shows it (100 = one core busy). On a plan
    # with less than one CPU, scale the thresholds: 70 % of 0.5 CPU is 35.
    - name: high_cpu
      metric: cpu_percent
      window: 5m
      above: 70%              # "CPU usage > 70% for extended period"
      for: 15m
      action: scale_up
    - name: high_memory
      metric: memory_percent  # of the container's memory limit
      window: 5m
      above: 80%              # "Memory usage > 80%"
      for: 10m
      action: scale_up
    - name: slow_p95
      metric: latency_p95
      window: 10m
      above: 2s               # "Response time > 2 seconds (P95)"
      for: 10m
      action: scale_up
    - name: high_error_rate
      metric: error_rate
      window: 10m
      above: 1%               # "Error rate > 1%"
      for: 10m
      action: scale_up
      severity: critical
    - name: queue_backlog
      metric: gauge:queue_depth   # set from the app: gauges.set("queue_depth", n)
      window: 5m
      above: 100              # "Queue depth > 100 jobs"
      for: 5m
      action: scale_up
    - name: low_cpu
      metric: cpu_percent
      window: 1h
      below: 30%              # "CPU usage < 30% for extended period"
      for: 1h
      action: scale_down
      severity: info
    - name: low_memory
      metric: memory_percent
      window: 1h
      below: 50%              # "Memory usage < 50%"
      for: 1h
      action: scale_down
      severity: info
  horizontal:                 # replicas = ceil(current x value / target), as the HPA does
    min_replicas: 1
    max_replicas: 5           # "5+ Instances: For high load"
    tolerance: 0.1
    targets:
      - {metric: cpu_percent, target: 70%}
    behavior:
      scale_down: {stabilization_window: 5m}   # the HPA's default
"""

_STARTER: Final = """\
# Preset "starter", from seed 000 (a spec-audit API on Render's Starter plan, $7/month).
# Its "Scale Trigger Points":
#
#   Upgrade to Standard if:
#   - Average response time >3s
#   - More than 20 concurrent requests
#   - Memory usage >80%
#   - Processing >500 audits/day
#
# The seed names no trigger for going back down, so this policy has no scale_down rule.
policy:
  preset: starter
  evaluation_interval: 1m
  current_plan: starter       # "Upgrade to Starter plan ($7/month) - CRITICAL"
  instances: 1
  cooldown: 30m
  rules:
    - name: slow_responses
      metric: latency_avg
      window: 10m
      above: 3s               # "Average response time >3s" (target: "<3 seconds")
      for: 10m
      action: scale_up
    - name: high_concurrency
      metric: concurrency_peak
      window: 5m
      above: 20               # "More than 20 concurrent requests"
      for: 5m
      action: scale_up
    - name: high_memory
      metric: memory_percent
      window: 5m
      above: 80%              # "Memory usage >80%" ("should be <70%")
      for: 10m
      action: scale_up
    - name: busy_days
      metric: requests_per_day   # one audit is one request to the API
      window: 24h
      above: 500              # "Processing >500 audits/day"
      action: scale_up
    - name: high_error_rate
      metric: error_rate
      window: 10m
      above: 5%               # "Symptom: High Error Rate (>5%)": check the logs first
      for: 10m
      action: investigate
      severity: critical
"""

PRESETS: Final[dict[str, str]] = {
    name: _HEADER.format(name=name) + body
    for name, body in (("mvp", _MVP), ("balanced", _BALANCED), ("starter", _STARTER))
}


def preset_yaml(name: str) -> str:
    """The commented ``scalewise.yaml`` text of preset ``name``; ConfigError if unknown."""
    text = PRESETS.get(name)
    if text is None:
        raise ConfigError("--preset", "preset", "one of " + ", ".join(PRESETS), name)
    return text
