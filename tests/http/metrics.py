"""Parses Prometheus/OpenMetrics text the way a scraper would (the prometheus_client package's
strict OpenMetrics parser) and prints every sample as one JSON object: {"name{labels}": value}.

Usage: metrics.py < scrape.txt"""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main():
    samples = {}
    for family in text_string_to_metric_families(sys.stdin.read()):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    print(json.dumps(samples))


if __name__ == "__main__":
    main()
