//! Indexing the channel: one `repodata.json` per subdir (`linux-64`, `noarch`), as
//! `conda index` writes it, so pixi can solve against a `file://` URL.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use fs_err as fs;
use serde_json::{json, Value};

use super::package::Record;

/// The subdirs a channel must have: pixi reads both, even when one is empty.
const SUBDIRS: [&str; 2] = ["linux-64", "noarch"];

/// Write `<channel>/<subdir>/repodata.json` for every subdir.
pub fn write(channel: &Path, records: &[Record]) -> Result<()> {
    for subdir in SUBDIRS {
        let packages: BTreeMap<&str, &Value> = records
            .iter()
            .filter(|r| r.subdir == subdir)
            .map(|r| (r.filename.as_str(), &r.repodata))
            .collect();
        let repodata = json!({
            "info": { "subdir": subdir },
            "packages": packages,
            "packages.conda": {},
            "removed": [],
            "repodata_version": 1,
        });
        let dir = channel.join(subdir);
        fs::create_dir_all(&dir)?;
        fs::write(
            dir.join("repodata.json"),
            serde_json::to_vec_pretty(&repodata)?,
        )?;
    }
    Ok(())
}
