#!/usr/bin/env bash
# The tests of the template's wiring run locally (run by scripts/stack.sh test
# with LOCAL_TRIGGERS=1, `make test`'s second end-to-end stage): the runner
# (scripts/local_triggers.py) drives the stream, the schedule and the rule,
# and every effect is checked where the platforms' stand-ins received it, in
# the local dead-letter queue, and in `provider events`. One test at a time:
# `provider dlq redrive` settles the whole table. Then the AWS calls the
# functions made, driven by the runner, against their grants.
set -uo pipefail
status=0
cargo test --package tests --test local_wiring -- --test-threads=1 || status=1
if [[ -n "${AWS_CALL_RECORDING:-}" ]]; then
  .tools/venv/bin/python scripts/check_aws_calls.py --calls-only infra/template.yaml "$AWS_CALL_RECORDING" || status=1
fi
exit "$status"
