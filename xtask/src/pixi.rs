//! placeholder
pub fn ensure() -> anyhow::Result<std::path::PathBuf> {
    anyhow::bail!("todo")
}
