# The commands a person types. A fresh Debian machine needs only `make demo` and `make test`:
# both install what they need (hack/install-deps.sh, idempotent).
#
# tally is built static (+crt-static, with an explicit --target so proc-macros stay dynamic):
# no dynamic loader on each call, and the same binary runs on the host and in the test VM.

TARGET      := x86_64-unknown-linux-gnu
STATIC_ENV  := RUSTFLAGS='-C target-feature=+crt-static' LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=/usr/lib/x86_64-linux-gnu
TALLY       := target/$(TARGET)/release/tally
SANDBOX     := hack/cgroup-sandbox.sh
SKIP_LOG    := target/skipped-tests.txt
# Every host suite and benchmark is bracketed by a listing of the host's cgroup directories
# (all hierarchies but memory, from outside the sandbox): what one leaves fails it.
LEAKS       := hack/cgroup-leaks.sh
LEAKS_SNAP  := target/cgroups-before.txt

.PHONY: all deps build test unit-test integration-test vm-test e2e fuzz fuzz-ci demo bench lint clean

all: build

deps:
	@hack/install-deps.sh

build: deps
	$(STATIC_ENV) cargo build --release --locked --target $(TARGET) -p tally

# Unit tests (no containers), then the container tests on the host inside the cgroup sandbox,
# then the same tests and the cgroup v2 ones in the VM, then Podman and containerd driving tally,
# then each fuzz target for 60 s.
test: unit-test integration-test vm-test e2e fuzz-ci
	@if [ -s $(SKIP_LOG) ]; then echo "== skipped tests (reason):"; sort -u $(SKIP_LOG); fi

unit-test: deps
	cargo test --locked --workspace --exclude integration_tests

integration-test: build
	@mkdir -p target && : > $(SKIP_LOG)
	@hack/rootless-user.sh >/dev/null
	cargo test --locked -p integration_tests --no-run
	@$(LEAKS) snapshot $(LEAKS_SNAP)
	TALLY_BIN=$(CURDIR)/$(TALLY) TALLY_SKIP_LOG=$(CURDIR)/$(SKIP_LOG) $(SANDBOX) cargo test --locked -p integration_tests
	@$(LEAKS) check $(LEAKS_SNAP) "the host integration tests"

vm-test: build
	hack/vm-test.sh $(TALLY) $(CURDIR)/$(SKIP_LOG)

# Real clients: Podman (--runtime) and a private containerd (ctr run --runc-binary), on the
# host; then their checkpoint and restore in the VM (the host's kernel cannot checkpoint).
e2e: build
	@$(LEAKS) snapshot $(LEAKS_SNAP)
	TALLY_SKIP_LOG=$(CURDIR)/$(SKIP_LOG) hack/e2e/run.sh $(TALLY)
	@$(LEAKS) check $(LEAKS_SNAP) "the Podman and containerd suites"
	hack/vm-e2e.sh $(TALLY) $(CURDIR)/$(SKIP_LOG)

# libFuzzer on the config path and the annotation parser (hack/fuzz.sh): 60 s each in `make
# test`, FUZZ_SECONDS (default 900) each here.
DENSITY_N ?= 1000
FUZZ_SECONDS ?= 900
fuzz-ci: deps
	hack/fuzz.sh 60

fuzz: deps
	hack/fuzz.sh $(FUZZ_SECONDS)

demo: build
	hack/demo.sh $(TALLY)

bench: build
	@$(LEAKS) snapshot $(LEAKS_SNAP)
	hack/bench.sh $(TALLY)
	@$(LEAKS) check $(LEAKS_SNAP) "the benchmarks"
	hack/density.sh $(TALLY) $(DENSITY_N)
	@$(LEAKS) check $(LEAKS_SNAP) "the density benchmark"
	hack/bench-migrate.sh $(TALLY)

lint:
	cargo fmt --all -- --check
	cargo fmt --manifest-path fuzz/Cargo.toml --all -- --check
	cargo clippy --locked --workspace --all-targets -- -D warnings
	CARGO_TARGET_DIR=target/fuzz-lint cargo clippy --locked --manifest-path fuzz/Cargo.toml --bins -- -D warnings

clean:
	cargo clean
