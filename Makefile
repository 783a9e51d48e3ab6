# The two commands: `make run` serves everything locally, `make test` checks it.
# Both install what they need into .tools/ (git-ignored) on first use.

SHELL := /bin/bash
TOOLS := .tools/venv/bin
export SAM_CLI_TELEMETRY := 0

.PHONY: run test tools deploy-tools deploy-plan lint-code lint-template unit e2e signals bench load perf mutants sizes build secrets deploy manifest teardown

## Serve every function on 127.0.0.1:${PORT:-9000} with DynamoDB Local on ${DYNAMODB_PORT:-8000}.
run:
	bash scripts/stack.sh run

## Formatting, clippy, unit tests, template lints, then storage, end-to-end and
## browser tests against a DynamoDB Local and cargo lambda watch on free ports,
## and the stacks' shutdown on each signal.
test: lint-code unit lint-template e2e signals

# Quiet on stdout, so that a target printing a document (make manifest) prints
# only that document.
tools:
	@bash scripts/install-tools.sh >&2

# What deploying needs and no more (SAM CLI, cargo-lambda, cfn-lint): no Java,
# DynamoDB Local or browser on a deploy machine.
deploy-tools:
	@bash scripts/install-tools.sh deploy >&2

lint-code:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	# Not a default test target (tests/Cargo.toml), so named: the wired stage's.
	cargo clippy --package tests --test local_wiring -- -D warnings

unit:
	cargo test --workspace --lib --bins

lint-template: tools
	$(TOOLS)/cfn-lint infra/template.yaml
	AWS_DEFAULT_REGION=us-east-1 $(TOOLS)/sam validate --lint --template-file infra/template.yaml
	$(TOOLS)/python scripts/check_routes.py infra/template.yaml Cargo.toml
	$(TOOLS)/python scripts/check_policies.py infra/template.yaml shared/src/store/dynamo.rs
	$(TOOLS)/python scripts/check_policies_test.py
	$(TOOLS)/python scripts/check_aws_calls_test.py
	$(TOOLS)/python scripts/local_triggers_test.py
	$(TOOLS)/python scripts/stage_test.py
	$(TOOLS)/python scripts/upgrade_test.py
	$(TOOLS)/python scripts/template_test.py
	$(TOOLS)/python scripts/check_config_reference.py infra/template.yaml shared/src docs/operating.md
	$(TOOLS)/python scripts/check_config_reference_test.py
	.tools/moto/bin/python scripts/deployment_test.py

## Two stacks: the first with its stream left to the tests (which hand records
## to the sync in process, deterministically); the second with the template's
## event sources driven by the local runner, as `make run` has them.
e2e: tools
	bash scripts/stack.sh test bash scripts/e2e.sh
	LOCAL_TRIGGERS=1 bash scripts/stack.sh test bash scripts/e2e_wired.sh

## `make run` and the test stack stop everything on SIGINT, SIGTERM and SIGHUP.
signals: tools
	$(TOOLS)/python scripts/stack_signals_test.py

## Criterion benchmark of the provision path without storage.
bench:
	cargo bench --package shared

## Load test: N provision → plan change → deprovision cycles at concurrency C.
load: tools
	cargo build --release --package tests --bin load
	RECORD_AWS_CALLS=0 WATCH_RELEASE=1 bash scripts/stack.sh test target/release/load --cycles $${N:-200} --concurrency $${C:-8}

## Each function's release binary as a Lambda instance against a floor binary
## and `hello`, on one DynamoDB Local: init, first, warm p50/p99, RSS and ratios.
perf: tools
	cargo build --release --package provision --package plan-change --package deprovision --package oidc --package marketplace-register --package marketplace-events --package usage
	cargo build --release --package tests --bin perf --bin perf_floor --bin perf_hello --bin fake_vendor --bin fake_aws_marketplace
	RECORD_AWS_CALLS=0 STANDIN_PROFILE=release bash scripts/stack.sh test target/release/perf --invocations $${N:-300} --rounds $${R:-3} $${PERF_ARGS:-}

## Mutation testing of the security-critical modules (.cargo/mutants.toml),
## with the shared crate's unit tests only; fails if a viable mutant survives.
mutants:
	bash scripts/mutants.sh

## Release build of every function for Lambda, and the size of each bootstrap.
sizes: tools
	bash scripts/sizes.sh

## `sam build` with the project's own cargo-lambda and SAM CLI on the PATH
## (arm64 bootstraps in .aws-sam/build/).
build: deploy-tools
	PATH="$(CURDIR)/$(TOOLS):$$PATH" sam build --template-file infra/template.yaml

## The deployment's secret, made once before the first deploy (docs/deploying.md):
## `make secrets NAME=my-addon/provider` creates its parts (NAME/lifecycle, …); NAME is
## the SecretsName `make deploy` asks for.
secrets:
	@test -n "$(NAME)" || { echo "usage: make secrets NAME=<secret name>" >&2; exit 2; }
	cargo build --quiet --package provider-cli
	target/debug/provider secrets init --name "$(NAME)"

## `make deploy STAGE=<stage>`: deploy/<stage>.toml (the SAM CLI's config
## format, every parameter written down) checked against the template and the
## AWS credentials, then built and deployed without a question.
## `make deploy-plan STAGE=<stage>`: the same up to the changeset, which is
## printed and not executed. BUILT=<template> deploys an already built
## template (a CI build's .aws-sam/build/template.yaml) instead of building.
## docs/deploying.md.
STAGE_FILE = $(CURDIR)/deploy/$(STAGE).toml

deploy-plan deploy: deploy-tools
	@test -n "$(STAGE)" || { echo "usage: make $@ STAGE=<stage>   (deploy/<stage>.toml; start from deploy/example.toml)" >&2; exit 2; }
	@$(TOOLS)/python scripts/stage.py ready "$(STAGE_FILE)" infra/template.yaml
	@$(if $(BUILT),echo "deploying the built template $(BUILT)" >&2,$(MAKE) --no-print-directory build)
	PATH="$(CURDIR)/$(TOOLS):$$PATH" sam deploy --config-file "$(STAGE_FILE)" --no-confirm-changeset $(if $(BUILT),--template-file "$(BUILT)",) $(if $(filter deploy-plan,$@),--no-execute-changeset,)

## The production manifest of stack STACK for MARKETPLACE (clevercloud, the
## default, heroku or scalingo): `provider manifest`, from marketplace.toml and
## the stack's outputs, parameters and secret. Stdout is the JSON alone; it holds
## secrets: write it under manifests/ (git-ignored), never in version control.
manifest:
	@test -n "$(STACK)" || { echo "usage: make manifest STACK=<stack name> [MARKETPLACE=clevercloud|heroku|scalingo] > manifests/<name>.json" >&2; exit 2; }
	@cargo build --quiet --workspace --bin provider >&2
	@target/debug/provider --stack "$(STACK)" manifest --marketplace "$(or $(MARKETPLACE),clevercloud)"

## Deletes stack STACK; says what stays (the table, the secret). With
## RETAINED=delete removes those too, only once `sam delete` has succeeded:
## docs/operating.md, "Teardown".
teardown: deploy-tools
	@test -n "$(STACK)" || { echo "usage: make teardown STACK=<stack name> [RETAINED=delete]" >&2; exit 2; }
	@mkdir -p .run
	$(TOOLS)/python scripts/deployment.py retained "$(STACK)" > ".run/retained-$(STACK).json"
	@cat ".run/retained-$(STACK).json"
	PATH="$(CURDIR)/$(TOOLS):$$PATH" sam delete --stack-name "$(STACK)" --no-prompts
	$(if $(filter delete,$(RETAINED)),$(TOOLS)/python scripts/deployment.py delete-retained < ".run/retained-$(STACK).json",@echo "kept: .run/retained-$(STACK).json names them")
