//! What `watch FILE|GLOB…` names: the files now (globs expanded again
//! every second) and the directories to watch for events.

use std::path::{Path, PathBuf};

fn is_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// Files the patterns name now, each with whether it was named literally:
/// a literal path is kept even when it does not exist yet (it is picked up
/// when it appears, and its absence becomes a fault after a while); a glob
/// names the regular files that match it.
pub fn expand(patterns: &[String]) -> Vec<(PathBuf, bool)> {
    let mut out: Vec<(PathBuf, bool)> = Vec::new();
    for p in patterns {
        if is_glob(p) {
            if let Ok(paths) = glob::glob(p) {
                out.extend(paths.flatten().filter(|p| p.is_file()).map(|p| (p, false)));
            }
        } else {
            out.push((PathBuf::from(p), true));
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// The directories to watch for events: the parents of the patterns.
pub fn watch_dirs(patterns: &[String]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = patterns
        .iter()
        .map(|p| {
            let fixed: String = p.split(['*', '?', '[']).next().unwrap_or("").to_string();
            let path = Path::new(&fixed);
            let dir = if is_glob(p) && fixed.ends_with('/') {
                path
            } else {
                path.parent().unwrap_or(Path::new("."))
            };
            if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir.to_path_buf()
            }
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_paths_are_kept_and_globs_match_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.log"), "").unwrap();
        std::fs::create_dir(dir.path().join("b.log")).unwrap();
        let glob = format!("{}/*.log", dir.path().display());
        let missing = dir.path().join("later.log").display().to_string();
        let got = expand(&[glob.clone(), missing.clone()]);
        assert_eq!(
            got,
            vec![
                (dir.path().join("a.log"), false),
                (PathBuf::from(&missing), true)
            ]
        );
        assert_eq!(watch_dirs(&[glob, missing]), vec![dir.path().to_path_buf()]);
    }
}
