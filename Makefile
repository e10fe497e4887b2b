# The two commands of the README. Both install libtorch 2.11.0 (PyPI torch==2.11.0) on first use,
# into a per-user cache (~/.cache/m3ae/torch-2.11.0) that every clone reuses.
.PHONY: setup demo test build

setup:
	bash scripts/setup.sh >/dev/null

build: setup
	cargo build --release

# The main job: check the port against every bundled golden set.
demo: build
	./target/release/m3ae parity parity/tiny-a parity/tiny-b parity/tiny-c parity/preprocess

# Every test: unit, parity, checkpoint and data suites.
test: setup
	cargo test --release
