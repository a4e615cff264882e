#!/usr/bin/env python3
"""Prints the line CI reads, "N passed, N failed", for a `meson test` run.

Counts GoogleTest cases (meson's JUnit log lists them for tests declared
with protocol 'gtest') and plain meson tests. A test program that failed
without reporting a failing case (a crash, a timeout) counts as one failure.

  test_summary.py BUILD/meson-logs/testlog.json
"""
import json
import os
import sys
import xml.etree.ElementTree as ET


def main(log_path):
    results = {}  # meson test name -> result string
    if os.path.exists(log_path):
        with open(log_path) as f:
            for line in f:
                line = line.strip()
                if line:
                    entry = json.loads(line)
                    results[entry["name"]] = entry["result"]
    passed = failed = 0
    failed_cases = {}  # meson test name -> failing cases seen
    junit = os.path.join(os.path.dirname(log_path), "testlog.junit.xml")
    if os.path.exists(junit):
        for suite in ET.parse(junit).getroot():
            parts = suite.get("name", "").split(".")
            # gtest suites are named project.test.Suite; plain tests sit in
            # a suite named after the project, one case per test.
            test = parts[1] if len(parts) >= 3 else None
            for case in suite.iter("testcase"):
                name = test or case.get("name")
                if case.find("skipped") is not None:
                    continue
                if (case.find("failure") is not None
                        or case.find("error") is not None):
                    failed += 1
                    failed_cases[name] = failed_cases.get(name, 0) + 1
                elif test is None and results.get(name) not in ("OK", None):
                    failed += 1
                    failed_cases[name] = failed_cases.get(name, 0) + 1
                else:
                    passed += 1
    for name, result in results.items():
        if result not in ("OK", "SKIP", "EXPECTEDFAIL") and not failed_cases.get(name):
            failed += 1
    if not results:
        failed += 1  # nothing ran: that is a failure, not a pass
    print(f"{passed} passed, {failed} failed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
