//! The `slimnet` command-line tool.
fn main() {}
