#!/usr/bin/env python3
"""Baseline for the phoenix-cloud inventory benchmark: boto3's DescribeInstances
paginator with the same filters Phoenix uses, against the same moto server.

Usage: bench_boto3_inventory.py ENDPOINT OWNER RUNS
Prints JSON: {"median_ms": float, "instances": int}. One untimed warm-up call first,
so client creation and the first connection are not counted (as in the Rust side).
"""
import json
import statistics
import sys
import time

import boto3


def main():
    endpoint, owner, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = boto3.client(
        "ec2",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    filters = [
        {"Name": "tag:phoenix:owner", "Values": [owner]},
        {
            "Name": "instance-state-name",
            "Values": ["pending", "running", "shutting-down", "stopping", "stopped"],
        },
    ]

    def inventory():
        ids = []
        for page in client.get_paginator("describe_instances").paginate(Filters=filters):
            for reservation in page["Reservations"]:
                ids.extend(i["InstanceId"] for i in reservation["Instances"])
        return ids

    inventory()
    times, count = [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        count = len(inventory())
        times.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"median_ms": statistics.median(times), "instances": count}))


if __name__ == "__main__":
    main()
