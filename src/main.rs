//! The `invitegate` command line.
fn main() {
    println!("invitegate {}", env!("CARGO_PKG_VERSION"));
}
