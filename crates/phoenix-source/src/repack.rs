//! Keep the local git cache at a few pack files (issue 17; found by the soak). libgit2
//! writes one pack per fetch and never repacks, and it keeps every pack it has read
//! open and mapped, so a daemon fetching a commit every few minutes for months would
//! hold thousands of packs: file descriptors, mapped memory and the cost of every object
//! lookup would all grow with their count. [`consolidate`] writes one pack of every
//! object reachable from the cache's references (and from the commits the caller still
//! needs) and deletes the other packs, once there are more than [`MAX_PACKS`].
//!
//! The caller drops its `Repository` afterwards and opens it again, so nothing reads
//! the deleted packs through an old handle.

use std::path::Path;

use git2::{Oid, Repository};

/// More packs than this and the cache is consolidated into one.
pub(crate) const MAX_PACKS: usize = 32;

/// The `.pack` files in `pack_dir`, by file name.
fn packs(pack_dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(pack_dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".pack") {
            names.push(name);
        }
    }
    Ok(names)
}

/// How many pack files the cache holds.
pub(crate) fn pack_count(repo: &Repository) -> usize {
    packs(&repo.path().join("objects").join("pack")).map_or(0, |p| p.len())
}

/// Why consolidating failed; the cache is left as it was (at worst with one more
/// pack, which the next consolidation includes).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RepackError {
    /// libgit2 could not walk or write.
    #[error("cannot write the consolidated pack")]
    Git(#[from] git2::Error),
    /// The pack folder could not be read or cleaned.
    #[error("cannot clean the pack folder")]
    Io(#[from] std::io::Error),
}

/// When the cache has more than `max_packs` packs: write every object reachable from
/// its references and from `keep` into one new pack and delete the others. Returns how
/// many packs were removed (0 when there was nothing to do).
pub(crate) fn consolidate(
    repo: &Repository,
    keep: &[Oid],
    max_packs: usize,
) -> Result<usize, RepackError> {
    let pack_dir = repo.path().join("objects").join("pack");
    let before = packs(&pack_dir)?;
    if before.len() <= max_packs {
        return Ok(0);
    }
    let mut walk = repo.revwalk()?;
    for reference in repo.references()? {
        let reference = reference?;
        if let Ok(commit) = reference.peel_to_commit() {
            walk.push(commit.id())?;
        }
    }
    for id in keep {
        if repo.find_commit(*id).is_ok() {
            walk.push(*id)?;
        }
    }
    let mut builder = repo.packbuilder()?;
    builder.insert_walk(&mut walk)?;
    builder.write(&pack_dir, 0o444)?;
    let Some(name) = builder.name()?.map(|n| format!("pack-{n}")) else {
        return Ok(0);
    };
    let mut removed = 0;
    for pack in before {
        let stem = pack.trim_end_matches(".pack");
        if stem == name {
            continue;
        }
        for ext in ["pack", "idx", "rev"] {
            match std::fs::remove_file(pack_dir.join(format!("{stem}.{ext}"))) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(err.into()),
            }
        }
        removed += 1;
    }
    Ok(removed)
}
