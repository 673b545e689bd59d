#!/usr/bin/env bash
# Concurrent prefetch: a walk over 50 offset pages (provider latency 20 ms per page) with the
# sequential walk vs a prefetch window of 8, in one run. Prints the speed-up; asserts nothing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo test -q --release -p unigate-tests --test prefetch -- --ignored --nocapture prefetch_speedup 2>&1 | grep RESULT
