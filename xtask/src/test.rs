//! placeholder
pub fn run(_: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("todo")
}
