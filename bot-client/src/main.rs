//! `tickwire-bot`: load-test a Tickwire server.

fn main() -> anyhow::Result<()> {
    Ok(())
}
