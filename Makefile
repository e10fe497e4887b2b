# The two commands of the README. Both install libtorch 2.11.0 (PyPI torch==2.11.0) on first use,
# into a per-user cache (~/.cache/m3ae/torch-2.11.0) that every clone reuses.
.PHONY: setup demo test build parity

setup:
	bash scripts/setup.sh >/dev/null

build: setup
	cargo build --release

# The main job: the MIM/MLM ablation study on generated data, end to end, into demo-report/
# (about 10 minutes on 2 cores; a rerun resumes).
demo: build
	./target/release/m3ae demo

# The port against every bundled golden set (also part of make test).
parity: build
	./target/release/m3ae parity parity/tiny-a parity/tiny-b parity/tiny-c parity/preprocess

# Every test: unit, parity, checkpoint and data suites.
test: setup
	cargo test --release
