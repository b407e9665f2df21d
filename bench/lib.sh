# What every benchmark script needs; sourced from the repository root.

# Installs the Debian package $2 when the command $1 is missing.
need_pkg() { # command package
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "installing $2 ..." >&2
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    fi
}

# Installs version $2 of the crate $1 with `cargo install` when the command $1 is missing or
# another version: the tools without a Debian package, pinned so that every run measures with
# the same one. `cargo install` puts them in ~/.cargo/bin, which a root shell's PATH often
# lacks, so that folder is added to it.
need_cargo_tool() { # command version
    [[ :$PATH: == *":$HOME/.cargo/bin:"* ]] || export PATH=$HOME/.cargo/bin:$PATH
    if [[ $("$1" --version 2>/dev/null) != *" $2" ]]; then
        echo "installing $1 $2 with cargo install (a few minutes) ..." >&2
        cargo install --locked --quiet --version "$2" "$1" </dev/null >/dev/null
    fi
}

# The seeded ~1.2 GiB dataset in $1/tree, generated once (bench/gen_data.py); sets $src.
ensure_dataset() { # data_dir
    src="$1/tree"
    if [[ ! -d "$src" ]]; then
        echo "== generating the dataset into $src (once)" >&2
        rm -rf "$1/tree.tmp"
        mkdir -p "$1"
        python3 bench/gen_data.py "$1/tree.tmp"
        mv "$1/tree.tmp" "$src"
    fi
}
