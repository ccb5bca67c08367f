#!/usr/bin/env bash
# Builds the static Linux handler and zips this folder for `az functionapp deployment source
# config-zip`. Needs the musl target: `rustup target add x86_64-unknown-linux-musl`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target=x86_64-unknown-linux-musl
cargo build --release --locked --target "$target" --manifest-path "$root/Cargo.toml"
out="$(mktemp -d)"
cp "$here/host.json" "$out/"
cp -r "$here/b2c-user-flow" "$out/"
cp "$root/target/$target/release/invitegate" "$out/handler"
chmod +x "$out/handler"
(cd "$out" && zip -qr "$root/target/invitegate-functions.zip" .)
rm -rf "$out"
echo "wrote $root/target/invitegate-functions.zip"
