#!/usr/bin/env bash
# Builds the static Linux handler and zips this folder for `az functionapp deployment source
# config-zip`. Needs the musl target: `rustup target add x86_64-unknown-linux-musl`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target=x86_64-unknown-linux-musl
cargo build --release --locked --target "$target" --manifest-path "$root/Cargo.toml"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cp "$here/host.json" "$out/"
# One folder per function, each holding a function.json: the three connector routes.
for function in "$here"/*/function.json; do
    cp -r "$(dirname "$function")" "$out/"
done
cp "$root/target/$target/release/invitegate" "$out/handler"
chmod +x "$out/handler"
rm -f "$root/target/invitegate-functions.zip"
(cd "$out" && zip -qr "$root/target/invitegate-functions.zip" .)
echo "wrote $root/target/invitegate-functions.zip"
