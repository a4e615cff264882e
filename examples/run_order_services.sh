#!/usr/bin/env bash
# The two-process example, as the README runs it (and as a test): the order
# service embeds and serves the broker; the inventory service consumes over
# RPC. Usage: run_order_services.sh BUILD_DIR
set -euo pipefail
build=$1
dir=$(mktemp -d /tmp/txmq-order-services-XXXXXX)
trap 'kill "$orders" 2>/dev/null || true; rm -rf "$dir"' EXIT
"$build/examples/txmq-order-service" "$dir" "unix:$dir/orders.sock" 10 &
orders=$!
# 10 orders, every fifth declined: 8 published.
"$build/examples/txmq-inventory-service" "unix:$dir/orders.sock" 8
wait "$orders"
