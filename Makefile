# The two commands a newcomer needs:
#   make run    validate the bundled example specs, start the demo Compose stack, and run
#               the holdfast daemon on examples/specs (state and archives in ./.holdfast/;
#               Ctrl-C stops it)
#   make test   install and start what the tests need (Docker engine, compose, database
#               packages, test images), then run the linters and every test
# the container image, without a registry:
#   make image  build the release binary and load it as the image holdfast:<version> and
#               holdfast:latest with `docker import` (scripts/image.sh; BINARY= takes a
#               built binary, IMAGE_TAGS= other tags)
# the Debian package:
#   make deb    a release build packaged with cargo-deb (installed first if missing) into
#               target/debian/: the binary, the systemd unit, man pages, completions and an
#               example spec; prints the .deb's path
# and one for the long runs:
#   make fuzz   fuzz the tar reader, the spec reader and the redactors (tests/fuzz/):
#               FUZZ_EXECS inputs per target (default 1,000,000), FUZZ_SEED, FUZZ_TARGETS
SHELL := bash
CARGO ?= cargo

.PHONY: run test env lint unit fuzz schemas image deb demo-up demo-down clean

run: env
	$(CARGO) run --quiet -- validate examples/specs examples/gallery specs
	scripts/demo-stack.sh up
	$(CARGO) run --quiet -- plan --specs examples/specs
	$(CARGO) run --quiet -- run --specs examples/specs

# The crash matrix (tests/crash_matrix.rs) needs the fault-injection build.
test: env lint
	$(CARGO) test --all-targets --locked --features fault-injection

env:
	scripts/test-env.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --locked -- -D warnings
	$(CARGO) clippy --all-targets --locked --features fault-injection -- -D warnings

# Pure-logic tests only; no Docker needed.
unit:
	$(CARGO) test --lib --locked

# A release build: a million inputs per target take minutes there and hours unoptimized.
# Crashers are saved under tests/fixtures/fuzz/<target>/, where `make test` runs them.
fuzz:
	$(CARGO) test --release --locked --test fuzz campaign_runs_clean -- --ignored --nocapture

schemas:
	$(CARGO) run --quiet -- schema --out schemas

# The Dockerfile's image, assembled from this machine's files (see README, Container image).
image:
	CARGO="$(CARGO)" scripts/image.sh

# The Debian package (see README, Debian package).
deb:
	CARGO="$(CARGO)" scripts/deb.sh

demo-up: env
	scripts/demo-stack.sh up

demo-down:
	scripts/demo-stack.sh down

clean:
	$(CARGO) clean
